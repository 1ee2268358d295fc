import ArgumentParser
import AsyncHTTPClient
import DispatchCore
import DispatchStore
import Foundation
import NIOCore
import NIOHTTP1

/// Where operator commands send their requests: `--server URL` or `DISPATCH_URL`, with the service token.
struct ServerOptions: ParsableArguments {
    @Option(help: "Service URL (default: $DISPATCH_URL); without it, commands read the local state dir.") var server: String?
    @Option(name: .customLong("token-file"), help: "File holding the bearer token (default: $DISPATCH_TOKEN_FILE, else $DISPATCH_TOKEN).")
    var tokenFile: String?

    /// The client when a server is configured. The token is found as `serve` finds it; `<state>/token` is read
    /// only for a server on this machine (a loopback URL), never sent to another host.
    func client(state: StateOptions) throws -> RemoteClient? {
        let env = ProcessInfo.processInfo.environment
        guard let url = server ?? env["DISPATCH_URL"].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
        let local = LoopbackAddress.host(ofURL: url).map(LoopbackAddress.isCertainlyLocal) ?? false
        let token = try ServiceToken.resolve(
            tokenFile: tokenFile.map(absolute),
            configuration: state.configuration(),
            createInState: false,
            useState: local
        )
        return RemoteClient(baseURL: url.hasSuffix("/") ? String(url.dropLast()) : url, token: token?.value)
    }
}

/// A small client for the routes of CONTRACT §3.
struct RemoteClient: Sendable {
    let baseURL: String
    let token: String?

    struct Reply {
        var status: Int
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }

        /// The body decoded as `type`; `nil` when it is not that document.
        func decode<T: Decodable>(_ type: T.Type) -> T? { try? JSONDecoder().decode(type, from: body) }

        /// The `status` field every reply of the routes carries.
        var statusField: String? { decode(Envelope.self)?.status }
    }

    func request(_ method: HTTPMethod, _ path: String, body: Data? = nil, timeout: TimeAmount = .seconds(330)) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            let buffer = try await response.body.collect(upTo: 256 << 20)
            return Reply(status: Int(response.status.code), body: Data(buffer.readableBytesView))
        } catch {
            throw RemoteError(message: "cannot reach \(baseURL)\(path): \(error)")
        }
    }

    /// Streams a response body to stdout (logs).
    func stream(_ path: String) async throws -> Int {
        var request = HTTPClientRequest(url: baseURL + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .hours(24))
        for try await chunk in response.body {
            FileHandle.standardOutput.write(Data(chunk.readableBytesView))
        }
        return Int(response.status.code)
    }

    /// The fields of a reply the CLI reads.
    struct Envelope: Decodable {
        var status: String?
        var currentStatus: String?
    }

    /// A reply that carries a result document.
    struct ResultEnvelope: Decodable {
        var result: DispatchResult?
    }

    /// Decodes the `result` document of a reply: `nil` when the reply is not JSON or has none; an error when the
    /// result is there but malformed.
    static func result(_ reply: Reply) throws -> DispatchResult? {
        guard (try? JSONDecoder().decode(Envelope.self, from: reply.body)) != nil else { return nil }
        return try JSONDecoder().decode(ResultEnvelope.self, from: reply.body).result
    }

    /// Submits a request and long-polls until terminal (or `timeout`).
    func dispatchAndAwait(_ request: DispatchRequest, timeout: Duration) async throws -> DispatchResult? {
        let submitted = try await self.request(.POST, "/internal/agent-dispatch", body: StoreJSON.encode(request))
        guard submitted.status == 200 || submitted.status == 202 else {
            throw RemoteError(message: "dispatch refused (\(submitted.status)): \(submitted.text)")
        }
        return try await awaitTerminal(request.requestId, timeout: timeout, progress: nil)
    }

    /// Long-polls in slices so progress can be shown; returns the last result seen.
    func awaitTerminal(_ id: String, timeout: Duration?, progress: ((String, Duration) -> Void)?) async throws -> DispatchResult? {
        let clock = ContinuousClock()
        let start = clock.now
        while true {
            let remaining = timeout.map { $0 - (clock.now - start) }
            if let remaining, remaining <= .zero {
                let reply = try await request(.GET, "/internal/agent-result/\(id)")
                return try Self.result(reply)
            }
            let sliceMs = min(remaining.map { Int($0.milliseconds) } ?? 10_000, 10_000)
            let reply = try await request(.GET, "/internal/agent-await/\(id)?timeoutMs=\(sliceMs)")
            switch reply.status {
            case 200: return try Self.result(reply)
            case 404: throw RemoteError(message: "unknown requestId \(id)")
            case 504: progress?(reply.decode(Envelope.self)?.currentStatus ?? "running", clock.now - start)
            default: throw RemoteError(message: "await failed (\(reply.status)): \(reply.text)")
            }
        }
    }
}

struct RemoteError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
