import AgentProcess
import AsyncHTTPClient
import DispatchTestSupport
import Foundation
import NIOHTTP1
import Testing

@Suite(.serialized) struct ServerTests {
    let dir = TempDir("server")

    func server(maxConcurrent: Int = 2, drainSeconds: Double = 10, environment: [String: String] = [:]) -> ServerProcess {
        ServerProcess(stateDir: dir.child("state"), maxConcurrent: maxConcurrent, drainSeconds: drainSeconds, environment: environment)
    }

    func terminal(_ server: ServerProcess, _ id: String, timeoutMs: Int = 30_000) async throws -> [String: Any] {
        let reply = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=\(timeoutMs)")
        #expect(reply.status == 200, "\(id): \(reply.text)")
        return try #require(reply.json?["result"] as? [String: Any])
    }

    @Test func fiveHundredPostsOverFiftyIdsRunFiftyExecutions() async throws {
        let server = server(maxConcurrent: 4)
        try await server.start()
        defer { server.stop() }
        let count = dir.child("count")
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<500 {
                group.addTask {
                    try await server.dispatch(["requestId": "load-\(index % 50)", "task": "fake:count=\(count) fake:answer=ok", "tool": "codex"])
                        .status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.allSatisfy { $0 == 200 || $0 == 202 }, "\(Set(statuses))")
        #expect(statuses.filter { $0 == 202 }.count == 50)
        for index in 0..<50 {
            #expect(try await terminal(server, "load-\(index)")["status"] as? String == "completed")
        }
        #expect(LogFile.read(count).split(separator: "\n").count == 50, "exactly one execution per id")
    }

    @Test func hostileInputGetsTheRight4xxAndLeavesNothing() async throws {
        let server = server()
        try await server.start()
        defer { server.stop() }
        let valid: [String: Any] = ["requestId": "ok-id", "task": "t", "tool": "codex"]
        func body(_ changes: [String: Any]) throws -> Data {
            try JSONSerialization.data(withJSONObject: valid.merging(changes) { $1 })
        }
        let cases: [(String, Data?, String??, Int, String?)] = [
            ("no token", try body(["requestId": "h-1"]), .some(nil), 401, nil),
            ("wrong token", try body(["requestId": "h-2"]), "wrong", 401, nil),
            ("2 MiB body", Data(repeating: 0x20, count: 2 << 20), nil, 413, nil),
            ("malformed JSON", Data("{\"requestId\":".utf8), nil, 400, "body"),
            ("wrong type", try body(["requestId": "h-3", "timeout": "soon"]), nil, 400, "timeout"),
            ("../x", try body(["requestId": "../x"]), nil, 400, "requestId"),
            ("a/b", try body(["requestId": "a/b"]), nil, 400, "requestId"),
            ("..", try body(["requestId": ".."]), nil, 400, "requestId"),
            ("NUL", try body(["requestId": "a\u{0}b"]), nil, 400, "requestId"),
            ("129 chars", try body(["requestId": String(repeating: "x", count: 129)]), nil, 400, "requestId"),
            ("unknown tool", try body(["requestId": "h-4", "tool": "gpt"]), nil, 400, "tool"),
            ("missing task", try JSONSerialization.data(withJSONObject: ["requestId": "h-5", "tool": "codex"]), nil, 400, "task"),
        ]
        for (name, payload, token, status, field) in cases {
            let reply = try await server.send(.POST, "/internal/agent-dispatch", body: payload, token: token)
            #expect(reply.status == status, "\(name): \(reply.text)")
            if let field { #expect(reply.json?["field"] as? String == field, "\(name): \(reply.text)") }
            #expect(reply.json?["ok"] as? Bool == false, "\(name): \(reply.text)")
        }
        for id in ["h-1", "h-2", "h-3", "h-4", "h-5"] {
            #expect(try await server.send(.GET, "/internal/agent-result/\(id)").status == 404, "\(id)")
            #expect(!FileManager.default.fileExists(atPath: "\(server.stateDir)/inbox/\(id).json"))
        }
        #expect((try await server.send(.GET, "/internal/agent-dispatches")).json?["items"] as? [Any] != nil)
        #expect(((try await server.send(.GET, "/internal/agent-dispatches")).json?["items"] as? [Any])?.isEmpty == true)
        #expect(try await server.send(.GET, "/internal/agent-result/a%2Fb").status == 400)
        let otel = try await server.send(
            .GET,
            "/internal/agent-dispatches",
            token: .some(nil),
            headers: [("x-otel-emit-token", "test-token-0123456789abcdef0123456789abcdef")]
        )
        #expect(otel.status == 200)
        #expect(try await server.send(.GET, "/healthz", token: .some(nil)).status == 200)
    }

    @Test func awaitWakesOnCompletionAndTimesOutWith504() async throws {
        let server = server()
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch(["requestId": "aw-1", "task": "fake:sleep=1 fake:answer=awake", "tool": "codex"])
        let clock = ContinuousClock()
        let start = clock.now
        let waiters = try await withThrowingTaskGroup(of: (String?, Double).self) { group in
            for _ in 0..<20 {
                group.addTask {
                    let result = try await terminal(server, "aw-1")
                    let received = Date()
                    let completedAt = ISO8601DateFormatter.fractional.date(from: result["completedAt"] as? String ?? "") ?? .distantPast
                    return (result["result"] as? String, received.timeIntervalSince(completedAt))
                }
            }
            return try await group.reduce(into: [(String?, Double)]()) { $0.append($1) }
        }
        #expect(waiters.allSatisfy { $0.0 == "awake" })
        let wakes = waiters.map(\.1).sorted()
        // completedAt is stamped before the commit; the first waiter must hear within 50 ms, all 20 soon after.
        #expect(wakes[0] < 0.05, "first waiter woke \(Int(wakes[0] * 1000))ms after completion")
        #expect(wakes[wakes.count - 1] < 0.25, "last waiter woke \(Int(wakes[wakes.count - 1] * 1000))ms after completion")
        #expect(clock.now - start < .seconds(10))

        _ = try await server.dispatch(["requestId": "aw-2", "task": "fake:sleep=5", "tool": "codex"])
        let timeout = try await server.send(.GET, "/internal/agent-await/aw-2?timeoutMs=200")
        #expect(timeout.status == 504)
        #expect(timeout.json?["status"] as? String == "timeout")
        #expect(try await server.send(.GET, "/internal/agent-await/never?timeoutMs=10").status == 404)
    }

    @Test func cancelRunningQueuedAndTerminal() async throws {
        let server = server(maxConcurrent: 1)
        try await server.start()
        defer { server.stop() }
        let count = dir.child("cancel-count")
        _ = try await server.dispatch(["requestId": "c-run", "task": "fake:hang fake:setsid-child=100", "tool": "codex"])
        let queued = try await server.dispatch(["requestId": "c-queued", "task": "fake:count=\(count)", "tool": "codex"])
        #expect(queued.json?["status"] as? String == "queued")
        #expect(await eventually { !survivors(of: "c-run").isEmpty })

        let cancelQueued = try await server.send(.POST, "/internal/agent-cancel/c-queued")
        #expect(cancelQueued.status == 200)
        #expect(cancelQueued.json?["status"] as? String == "cancelled")
        let cancelRunning = try await server.send(.POST, "/internal/agent-cancel/c-run")
        #expect(cancelRunning.status == 200, "\(cancelRunning.text)")
        #expect(cancelRunning.json?["status"] as? String == "cancelled")
        #expect(survivors(of: "c-run").isEmpty)
        #expect(try await server.send(.POST, "/internal/agent-cancel/c-run").status == 409)
        #expect(try await server.send(.POST, "/internal/agent-cancel/nope").status == 404)
        // A request queued after it runs to its end: had the cancelled one been started, it would have run first.
        _ = try await server.dispatch(["requestId": "c-after", "task": "fake:answer=after", "tool": "codex"])
        #expect(try await terminal(server, "c-after")["status"] as? String == "completed")
        #expect(!FileManager.default.fileExists(atPath: count), "a cancelled queued request never starts")
    }

    @Test func lateCallbackForATerminalIdChangesNothing() async throws {
        let server = server()
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch(["requestId": "cb-1", "task": "fake:answer=first", "tool": "codex"])
        let before = try await terminal(server, "cb-1")
        let late = try JSONSerialization.data(withJSONObject: [
            "requestId": "cb-1", "state": "failed", "backend": "k8s", "error": "late failure",
        ])
        let reply = try await server.send(.POST, "/internal/agent-result", body: late)
        #expect(reply.status == 409, "a host-mode request is run by no Job: the callback is refused, the result unchanged")
        #expect(reply.json?["ignored"] as? Bool == true)
        let after = try await terminal(server, "cb-1")
        #expect(after["status"] as? String == "completed")
        #expect(after["result"] as? String == before["result"] as? String)
        #expect(after["updatedAt"] as? String == before["updatedAt"] as? String)
        let bad = try await server.send(.POST, "/internal/agent-result", body: Data(#"{"requestId":"cb-1"}"#.utf8))
        #expect(bad.status == 400)
    }

    @Test func sigtermDrainsRunningDispatchesBeforeExit() async throws {
        let server = server(maxConcurrent: 4, drainSeconds: 1.5)
        try await server.start()
        for index in 0..<3 {
            _ = try await server.dispatch(["requestId": "drain-\(index)", "task": "fake:hang", "tool": "codex"])
        }
        _ = try await server.dispatch(["requestId": "drain-quick", "task": "fake:sleep=0.8 fake:answer=made-it", "tool": "codex"])
        #expect(await eventually { (0..<3).allSatisfy { !survivors(of: "drain-\($0)").isEmpty } })
        let exit = try #require(server.stop(SIGTERM))
        #expect(exit.exitCode == 0, "\(exit.stderr)")
        for index in 0..<3 {
            let inbox =
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: "\(server.stateDir)/inbox/drain-\(index).json"))
                ) as! [String: Any]
            #expect(inbox["status"] as? String == "cancelled")
            #expect(inbox["error"] as? String == "runner shutting down")
            #expect(survivors(of: "drain-\(index)").isEmpty)
        }
        let quick =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: "\(server.stateDir)/inbox/drain-quick.json"))
            ) as! [String: Any]
        #expect(quick["status"] as? String == "completed", "finished inside the drain window")
    }

    /// The last row of the README's restart table: a run no monitor holds (isolation off; with it the run is adopted,
    /// AdoptionTests) is ended as abandoned, and queued requests run.
    @Test func killNineThenRestartResolvesRunningAndRunsQueued() async throws {
        let unheld = ["DISPATCH_ISOLATION": "none"]
        let first = server(maxConcurrent: 1, environment: unheld)
        try await first.start()
        _ = try await first.dispatch(["requestId": "k-run", "task": "fake:hang fake:setsid-child=100", "tool": "codex"])
        _ = try await first.dispatch(["requestId": "k-queued", "task": "fake:answer=after-restart", "tool": "codex"])
        #expect(await eventually { !survivors(of: "k-run").isEmpty })
        first.stop(SIGKILL)
        #expect(!survivors(of: "k-run").isEmpty, "the agent outlives a kill -9 of its runner")

        let second = server(maxConcurrent: 1, environment: unheld)
        let clock = ContinuousClock()
        let start = clock.now
        try await second.start()
        defer { second.stop() }
        let running = try await second.send(.GET, "/internal/agent-result/k-run")
        #expect(clock.now - start < .seconds(2) + .seconds(3), "restart plus recovery")
        #expect(running.json?["status"] as? String == "failed")
        #expect((running.json?["result"] as? [String: Any])?["error"] as? String == "runner restarted while running; execution abandoned")
        #expect(survivors(of: "k-run").isEmpty)
        let queued = try await terminal(second, "k-queued")
        #expect(queued["status"] as? String == "completed")
        #expect(queued["result"] as? String == "after-restart")
    }

    @Test func aNonLoopbackListenerWithoutAConfiguredTokenStillRequiresOne() async throws {
        let state = dir.child("nl")
        let server = ServerProcess(stateDir: state, token: nil, extraArguments: ["--host", "0.0.0.0"])
        try await server.start()
        defer { server.stop() }
        let token = try String(contentsOfFile: "\(state)/token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let request = "GET /internal/agent-dispatches HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"
        #expect(try RawHTTP.send(port: server.port, request).status == 401, "no Host check off loopback, but no way in without the token")
        let authorized =
            "GET /internal/agent-dispatches HTTP/1.1\r\nHost: dispatch.example\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n"
        #expect(try RawHTTP.send(port: server.port, authorized).status == 200)
    }

    @Test func metricsInfoAndReadiness() async throws {
        let server = server()
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch(["requestId": "m-1", "task": "fake:answer=x", "tool": "codex"])
        _ = try await server.dispatch(["requestId": "m-1", "task": "fake:answer=x", "tool": "codex"])
        _ = try await terminal(server, "m-1")
        let metrics = try await server.send(.GET, "/metrics", token: .some(nil))
        #expect(metrics.text.contains(#"dispatch_dispatches_total{tool="codex",status="completed"} 1"#))
        #expect(metrics.text.contains("dispatch_dedupe_total 1"))
        // Hummingbird's request metrics, per route pattern (not per id) and status.
        #expect(
            metrics.text.contains(
                #"hb_requests{http_route="/internal/agent-dispatch",http_request_method="POST",http_response_status_code="202"} 1"#
            ),
            "\(metrics.text)"
        )
        #expect(metrics.text.contains(#"http_route="/internal/agent-await/{requestId}""#))
        let info = try await server.send(.GET, "/", token: .some(nil))
        #expect(info.json?["isolation"] as? String == EngineFixture.isolation.mode.rawValue && info.json?["store"] as? String == "sqlite")
        let version = try CommandRunner.run(TestPaths.dispatchBinary, ["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!version.isEmpty && info.json?["version"] as? String == version, "GET / reports the binary's own version")
        #expect((info.json?["gitSha"] as? String)?.count ?? 0 >= 7)
        #expect(try await server.send(.GET, "/readyz", token: .some(nil)).status == 200)
        let logs = try await server.send(.GET, "/internal/agent-logs/m-1?stream=stdout")
        #expect(logs.text.contains("item.completed"))
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let fractional: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}
