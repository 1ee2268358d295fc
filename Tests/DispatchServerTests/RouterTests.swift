import DispatchCore
import DispatchServer
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// Every route's answers, in process (`app.test(.router)`): auth, content type, limits and the 2xx/4xx bodies.
/// The live-process tests (ServerTests, SecurityTests) cover the same through a real `dispatch serve`, and the
/// Host check there (the router test framework always sends `localhost`).
@Suite(.serialized) struct RouterTests {
    static let token = "router-token-0123456789abcdef0123456789abcdef"

    /// The router over a fresh engine, with a host header and the token unless told otherwise.
    struct Harness {
        let fixture: EngineFixture
        let service: DispatchService
        let app: Application<RouterResponder<DispatchRequestContext>>

        init(maxBodyBytes: Int = 1 << 20) throws {
            fixture = try EngineFixture()
            service = DispatchService(engine: fixture.engine, maxConcurrent: 2, logger: Logger(label: "router-test"))
            let configuration = ServerConfiguration(host: "127.0.0.1", port: 0, token: RouterTests.token, maxBodyBytes: maxBodyBytes)
            app = Application(router: DispatchApplication.buildRouter(service: service, configuration: configuration))
        }

        /// `body` against the router, with the service running (it starts what the routes admit).
        func test(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
            try await withRunning(service) { try await app.test(.router, body) }
        }
    }

    static func headers(token: String? = RouterTests.token, json: Bool = true) -> HTTPFields {
        var fields = HTTPFields()
        if let token { fields[.authorization] = "Bearer \(token)" }
        if json { fields[.contentType] = "application/json" }
        return fields
    }

    static func object(_ response: TestResponse) throws -> [String: Any] {
        try #require(
            try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any],
            "\(String(buffer: response.body))"
        )
    }

    static func body(_ fields: [String: Any]) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: fields))
    }

    @Test func healthInfoReadinessAndMetricsNeedNoToken() async throws {
        let harness = try Harness()
        try await harness.test { client in
            let health = try await client.execute(uri: "/healthz", method: .get, headers: Self.headers(token: nil))
            #expect(health.status == .ok)
            #expect(try Self.object(health)["ok"] as? Bool == true)
            let info = try Self.object(try await client.execute(uri: "/", method: .get, headers: Self.headers(token: nil)))
            #expect(info["name"] as? String == "agent-dispatch")
            #expect(info["defaultBackend"] as? String == "local")
            #expect(info["counts"] is [String: Any] && info["maxConcurrent"] as? Int == 2)
            let ready = try Self.object(try await client.execute(uri: "/readyz", method: .get, headers: Self.headers(token: nil)))
            #expect(ready["ok"] as? Bool == true && ready["store"] as? Bool == true && ready["inbox"] as? Bool == true)
            let metrics = try await client.execute(uri: "/metrics", method: .get, headers: Self.headers(token: nil))
            #expect(metrics.status == .ok && String(buffer: metrics.body).contains("dispatch_dedupe_total 0"))
            let missing = try await client.execute(uri: "/no/such/route", method: .get, headers: Self.headers())
            #expect(missing.status == .notFound)
            #expect(try Self.object(missing)["ok"] as? Bool == false)
        }
    }

    @Test func internalRoutesNeedTheToken() async throws {
        let harness = try Harness()
        try await harness.test { client in
            for (method, uri) in [
                (HTTPRequest.Method.post, "/internal/agent-dispatch"), (.get, "/internal/agent-result/x"), (.get, "/internal/agent-await/x"),
                (.post, "/internal/agent-cancel/x"), (.get, "/internal/agent-dispatches"), (.get, "/internal/agent-logs/x"),
            ] {
                for token in [nil, "wrong-token-0123456789abcdef0123456789abcdef", RouterTests.token + "x"] {
                    let response = try await client.execute(uri: uri, method: method, headers: Self.headers(token: token), body: try Self.body([:]))
                    #expect(response.status == .unauthorized, "\(method) \(uri) with \(token ?? "no token")")
                    #expect(try Self.object(response)["error"] as? String == "missing or wrong token")
                }
            }
            let stranger = try await client.execute(
                uri: "/internal/agent-result",
                method: .post,
                headers: Self.headers(token: "cb1-" + String(repeating: "0", count: 64)),
                body: try Self.body(["requestId": "x", "state": "completed"])
            )
            #expect(stranger.status == .unauthorized)
        }
        #expect(try await harness.fixture.engine.store.list(status: nil, limit: 10).isEmpty, "nothing recorded")
    }

    @Test func dispatchValidatesTypesAndSizeBeforeRecording() async throws {
        let harness = try Harness(maxBodyBytes: 4096)
        try await harness.test { client in
            let text = try await client.execute(
                uri: "/internal/agent-dispatch",
                method: .post,
                headers: Self.headers(json: false),
                body: ByteBuffer(string: "{}")
            )
            #expect(text.status == .unsupportedMediaType)
            let invalid = try await client.execute(
                uri: "/internal/agent-dispatch",
                method: .post,
                headers: Self.headers(),
                body: try Self.body(["requestId": "a", "task": "t", "tool": "gpt"])
            )
            #expect(invalid.status == .badRequest)
            #expect(try Self.object(invalid)["field"] as? String == "tool")
            let notJSON = try await client.execute(
                uri: "/internal/agent-dispatch",
                method: .post,
                headers: Self.headers(),
                body: ByteBuffer(string: "[1")
            )
            #expect(notJSON.status == .badRequest)
            let huge = try await client.execute(
                uri: "/internal/agent-dispatch",
                method: .post,
                headers: Self.headers(),
                body: try Self.body(["requestId": "big", "task": String(repeating: "x", count: 8192), "tool": "codex"])
            )
            #expect(huge.status == .contentTooLarge)
            let badId = try await client.execute(uri: "/internal/agent-result/bad%20id", method: .get, headers: Self.headers())
            #expect(badId.status == .badRequest)
            #expect(try Self.object(badId)["field"] as? String == "requestId")
            let unknown = try Self.object(try await client.execute(uri: "/internal/agent-result/nobody", method: .get, headers: Self.headers()))
            #expect(unknown["status"] as? String == "unknown" && unknown["ok"] as? Bool == false)
        }
        #expect(try await harness.fixture.engine.store.list(status: nil, limit: 10).isEmpty, "a refused body leaves nothing behind")
    }

    @Test func dispatchThenDuplicateThenResultAwaitCancelAndList() async throws {
        let harness = try Harness()
        let id = "router-\(UUID().uuidString.prefix(8).lowercased())"
        let request = try Self.body(["requestId": id, "task": "fake:answer=routed", "tool": "codex", "cwd": harness.fixture.dir.path])
        try await harness.test { client in
            let accepted = try await client.execute(uri: "/internal/agent-dispatch", method: .post, headers: Self.headers(), body: request)
            #expect(accepted.status == .accepted)
            let first = try Self.object(accepted)
            #expect(first["duplicate"] as? Bool == false && first["requestId"] as? String == id && first["result"] == nil)
            let awaited = try await client.execute(uri: "/internal/agent-await/\(id)?timeoutMs=30000", method: .get, headers: Self.headers())
            #expect(awaited.status == .ok)
            #expect((try Self.object(awaited)["result"] as? [String: Any])?["result"] as? String == "routed")
            let again = try await client.execute(uri: "/internal/agent-dispatch", method: .post, headers: Self.headers(), body: request)
            #expect(again.status == .ok)
            let duplicate = try Self.object(again)
            #expect(duplicate["duplicate"] as? Bool == true && (duplicate["result"] as? [String: Any])?["status"] as? String == "completed")
            let cancel = try await client.execute(
                uri: "/internal/agent-cancel/\(id)",
                method: .post,
                headers: Self.headers(),
                body: try Self.body([:])
            )
            #expect(cancel.status == .conflict)
            #expect(try Self.object(cancel)["error"] as? String == "request is already completed")
            let unknownCancel = try await client.execute(
                uri: "/internal/agent-cancel/nobody",
                method: .post,
                headers: Self.headers(),
                body: try Self.body([:])
            )
            #expect(unknownCancel.status == .notFound)
            let list = try Self.object(try await client.execute(uri: "/internal/agent-dispatches?limit=5", method: .get, headers: Self.headers()))
            let item = try #require((list["items"] as? [[String: Any]])?.first)
            #expect(item["requestId"] as? String == id && item["error"] is NSNull && item["sandboxBackend"] is NSNull, "absent values are null")
            #expect(list["next"] is NSNull)
            for bad in ["status=bogus", "before=x", "prefix=bad%20prefix"] {
                let refused = try await client.execute(uri: "/internal/agent-dispatches?\(bad)", method: .get, headers: Self.headers())
                #expect(refused.status == .badRequest, "\(bad)")
                #expect(try Self.object(refused)["field"] as? String == String(bad.prefix { $0 != "=" }))
            }
            let logs = try await client.execute(uri: "/internal/agent-logs/\(id)?stream=bogus", method: .get, headers: Self.headers())
            #expect(logs.status == .badRequest)
            #expect(try Self.object(logs)["field"] as? String == "stream")
        }
    }

    @Test func awaitTimesOutWithTheCurrentStatus() async throws {
        let harness = try Harness()
        let id = "router-slow-\(UUID().uuidString.prefix(8).lowercased())"
        try await harness.test { client in
            let body = try Self.body(["requestId": id, "task": "fake:sleep=5", "tool": "codex", "cwd": harness.fixture.dir.path])
            #expect(try await client.execute(uri: "/internal/agent-dispatch", method: .post, headers: Self.headers(), body: body).status == .accepted)
            let waited = try await client.execute(uri: "/internal/agent-await/\(id)?timeoutMs=200", method: .get, headers: Self.headers())
            #expect(waited.status == .gatewayTimeout)
            let object = try Self.object(waited)
            #expect(object["status"] as? String == "timeout" && object["currentStatus"] as? String == "running" && object["timeoutMs"] as? Int == 200)
            let cancelled = try await client.execute(
                uri: "/internal/agent-cancel/\(id)",
                method: .post,
                headers: Self.headers(),
                body: try Self.body([:])
            )
            #expect(cancelled.status == .ok)
            #expect(try Self.object(cancelled)["status"] as? String == "cancelled")
            // The callback route takes reports only for requests a k8s Job runs.
            let report = try Self.body(["requestId": id, "state": "completed", "output": "forged"])
            let refused = try await client.execute(uri: "/internal/agent-result", method: .post, headers: Self.headers(), body: report)
            #expect(refused.status == .conflict)
            #expect(try Self.object(refused)["ignored"] as? Bool == true)
            let malformed = try await client.execute(
                uri: "/internal/agent-result",
                method: .post,
                headers: Self.headers(),
                body: try Self.body(["state": 1])
            )
            #expect(malformed.status == .badRequest)
        }
    }
}
