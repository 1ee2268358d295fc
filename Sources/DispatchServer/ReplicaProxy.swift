import AsyncHTTPClient
import DispatchStore
import Dispatcher
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Serves a request's files from the replica that holds them (CONTRACT §8): the logs and the patch of a run held by
/// another live replica are streamed from it, with the admin token (the same on every replica).
struct ReplicaProxy: Sendable {
    let store: any DispatchStore
    let token: String

    /// Marks a proxied request: the replica that gets one answers from its own files and never proxies it on.
    static let proxiedHeader = HTTPField.Name("X-Dispatch-Proxied")!

    /// How long a peer may take to connect and answer before this replica answers from what it has itself.
    static let headTimeout: TimeAmount = .seconds(3)

    /// The URL of the live replica that holds `record`'s files, when that is another one: the request's owner,
    /// heard from within two leases.
    func peer(holding record: DispatchRecord, for request: Request) async -> String? {
        guard store.announcesCommits, request.headers[Self.proxiedHeader] == nil,
            let name = record.owner?.replica, name != RunnerOwner.replicaName,
            let replica = try? await store.replica(named: name), let url = replica.url,
            replica.silentForMs < Int64(store.leaseDuration * 2000)
        else { return nil }
        return url
    }

    /// The answer of the replica at `base` to the same path and query, streamed through; `nil` when it cannot be
    /// reached (the caller answers from what it has).
    func forward(_ request: Request, to base: String) async -> Response? {
        let target = base + request.uri.path + (request.uri.query.map { "?\($0)" } ?? "")
        var outgoing = HTTPClientRequest(url: target)
        outgoing.headers.add(name: "Authorization", value: "Bearer \(token)")
        outgoing.headers.add(name: Self.proxiedHeader.rawName, value: "1")
        let answer: HTTPClientResponse
        do {
            // The timeout covers connecting and the answer's head (the client retries a refused connection until
            // then); the body, a followed log that streams as long as its run, is not bounded by it.
            answer = try await HTTPClient.shared.execute(outgoing, timeout: Self.headTimeout)
        } catch {
            return nil
        }
        var headers = HTTPFields()
        if let type = answer.headers.first(name: "Content-Type") { headers[.contentType] = type }
        return Response(
            status: HTTPResponse.Status(code: Int(answer.status.code)),
            headers: headers,
            body: ResponseBody { writer in
                for try await chunk in answer.body { try await writer.write(chunk) }
                try await writer.finish(nil)
            }
        )
    }
}
