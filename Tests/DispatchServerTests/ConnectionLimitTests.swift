import DispatchTestSupport
import Foundation
import Testing

/// Idle connections as an attacking agent opens them: `serve` keeps its descriptors (a cap, raised limits) and
/// closes connections that send nothing, so it neither crashes nor takes its own live runs for dead.
@Suite(.serialized) struct ConnectionLimitTests {
    let dir = TempDir("connections")

    /// serve at a 1,024 open-files limit (soft and hard, where the attack crashed it) and 2,000 connections that
    /// never send a byte: `/healthz` answers, the idle ones are closed, and a run live throughout ends `completed`.
    @Test func idleConnectionsNeitherCrashServeNorEndItsRuns() async throws {
        let server = ServerProcess(stateDir: dir.child("flood"), launcher: ["/usr/bin/prlimit", "--nofile=1024:1024", "--"])
        try await server.start()
        defer { server.stop() }
        let accepted = try await server.dispatch(["requestId": "live-1", "task": "fake:sleep=15 fake:answer=alive", "tool": "codex"])
        #expect(accepted.status == 202, "\(accepted.text)")
        let flood = try CommandRunner.start(
            "/usr/bin/python3",
            ["\(TestPaths.packageRoot)/canaries/idle_connections.py", "--port", "\(server.port)", "--count", "2000", "--seconds", "25"]
        )
        try await Task.sleep(for: .seconds(2))
        let health = try await server.send(.GET, "/healthz", timeout: .seconds(30))
        #expect(health.status == 200, "\(health.text)")
        let done = try await server.send(.GET, "/internal/agent-await/live-1?timeoutMs=60000", timeout: .seconds(70))
        let result = done.json?["result"] as? [String: Any]
        #expect(result?["status"] as? String == "completed", "\(done.text)")
        #expect(result?["result"] as? String == "alive")
        let report = flood.wait().stdout.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let closed = report?["closedByServer"] as? Int ?? 0
        #expect(report?["opened"] as? Int == 2000, "\(String(describing: report))")
        #expect(closed >= 700, "serve closed only \(closed) connections that never sent a request head")
        #expect(server.pid.map { kill($0, 0) == 0 } == true, "serve is alive")
    }
}
