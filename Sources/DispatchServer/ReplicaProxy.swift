import AsyncHTTPClient
import DispatchCore
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

    /// Marks a proxied request with the replica it is for: the replica that gets one answers from its own files and
    /// never proxies it on, or with 421 when it is not that replica.
    static let proxiedHeader = HTTPField.Name("X-Dispatch-Proxied")!

    /// 421 for a proxied request meant for another replica (its URL reached this one); `nil` otherwise.
    static func misdirected(_ request: Request) -> Response? {
        guard let meant = request.headers[proxiedHeader], meant != "1", meant != ReplicaName.current else { return nil }
        return Response(status: .misdirectedRequest)
    }

    /// How long a peer may take to connect and answer before this replica answers from what it has itself.
    static let headTimeout: TimeAmount = .seconds(3)

    /// The client peers are reached with, for the process's life: no read timeout (a followed log of a quiet agent
    /// sends nothing for minutes), a connect timeout within ``headTimeout``.
    static let client = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: HTTPClient.Configuration(timeout: .init(connect: .seconds(2), read: nil))
    )

    /// The URL of the live replica that holds `record`'s files, when that is another one: the request's owner,
    /// heard from within two leases.
    func peer(holding record: DispatchRecord, for request: Request) async -> (name: String, url: String)? {
        guard store.announcesCommits, request.headers[Self.proxiedHeader] == nil, let owner = record.owner,
            let name = owner.replica, name != ReplicaName.current,
            let replica = try? await store.replica(named: name), let url = replica.url,
            replica.silentForMs < Int64(store.leaseDuration * 2000)
        else { return nil }
        return (name, url)
    }

    /// The answer of the replica at `base` to the same path and query, streamed through; `nil` when it cannot be
    /// reached (the caller answers from what it has).
    func forward(_ request: Request, to peer: (name: String, url: String)) async -> Response? {
        let (name, base) = peer
        var trimmed = base
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        let target = trimmed + request.uri.path + (request.uri.query.map { "?\($0)" } ?? "")
        var outgoing = HTTPClientRequest(url: target)
        outgoing.headers.add(name: "Authorization", value: "Bearer \(token)")
        outgoing.headers.add(name: Self.proxiedHeader.rawName, value: name)
        let answer: HTTPClientResponse
        do {
            // The timeout covers connecting and the answer's head (the client retries a refused connection until
            // then); the body, a followed log that streams as long as its run, is not bounded by it.
            answer = try await Self.client.execute(outgoing, timeout: Self.headTimeout)
        } catch {
            return nil
        }
        // Not the replica it was meant for (a URL that reaches another one): answer from what is here.
        guard answer.status.code != 421 else { return nil }
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
