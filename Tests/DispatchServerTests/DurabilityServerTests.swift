import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct DurabilityServerTests {
    let dir = TempDir("durability-server")

    @Test func aSecondServeOnTheStateDirExitsTwoAndQueuedRequestsRunOnce() async throws {
        let state = dir.child("one-serve")
        let server = ServerProcess(stateDir: state, maxConcurrent: 1)
        try await server.start()
        defer { server.stop() }
        let count = dir.child("count")
        _ = try await server.dispatch(["requestId": "first", "task": "fake:sleep=2 fake:count=\(count) fake:answer=ok", "tool": "codex"])
        for index in 0..<3 {
            _ = try await server.dispatch(["requestId": "queued-\(index)", "task": "fake:count=\(count) fake:answer=q", "tool": "codex"])
        }
        let second = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", state],
            environment: ["DISPATCH_TOKEN": "test-token-0123456789abcdef0123456789abcdef"]
        )
        #expect(second.exitCode == 2)
        #expect(second.stderr.contains(state), "\(second.stderr)")
        #expect(second.stderr.contains("pid \(server.pid ?? -1)"), "names the live holder: \(second.stderr)")
        for id in ["first", "queued-0", "queued-1", "queued-2"] {
            let reply = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000")
            #expect(reply.json?["status"] as? String == "completed", "\(id): \(reply.text)")
        }
        #expect(LogFile.read(count).split(separator: "\n").count == 4, "each request ran exactly once")
    }

    @Test func theLogsRouteStreamsAWholeFiveMegabyteLog() async throws {
        let server = ServerProcess(stateDir: dir.child("logs"))
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch(["requestId": "big-log", "task": "fake:big-output=5000000 fake:answer=ok", "tool": "codex"])
        let done = try await server.send(.GET, "/internal/agent-await/big-log?timeoutMs=60000")
        #expect(done.json?["status"] as? String == "completed", "\(done.text)")
        let logs = try await server.send(.GET, "/internal/agent-logs/big-log")
        #expect(logs.status == 200)
        let path = try #require((done.json?["result"] as? [String: Any]).flatMap { ($0["logs"] as? [String: Any])?["stdoutPath"] as? String })
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size > 5_000_000)
        #expect(logs.text.utf8.count == size, "all \(size) bytes, not the first MiB")
        let followed = try await server.send(.GET, "/internal/agent-logs/big-log?follow=1")
        #expect(followed.text.utf8.count == size, "follow drains to the end too")
    }

    @Test func aServeKilledOnOneHostIsRecoveredByAServeOnAnotherWithinTheLease() async throws {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return }
        let state = dir.child("two-hosts")
        // Without isolation no monitor holds the agent (with one, the second serve on this machine would adopt it:
        // AdoptionTests): what is tested here is the lease, which is all another host has to go by.
        let env = ["DISPATCH_LEASE_SECONDS": "3", "DISPATCH_ISOLATION": "none"]
        let first = ServerProcess(stateDir: state, environment: env, launcher: ServerProcess.onHost("dispatch-host-a"))
        try await first.start()
        _ = try await first.dispatch(["requestId": "stranded", "task": "fake:sleep=60 fake:answer=never", "tool": "codex"])
        #expect(await eventually { !survivors(of: "stranded").isEmpty })
        first.stop(SIGKILL)
        let clock = ContinuousClock()
        let killed = clock.now
        let second = ServerProcess(stateDir: state, environment: env, launcher: ServerProcess.onHost("dispatch-host-b"))
        try await second.start()
        defer { second.stop() }
        let reply = try await second.send(.GET, "/internal/agent-await/stranded?timeoutMs=20000")
        let elapsed = clock.now - killed
        let result = try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
        #expect(result["status"] as? String == "failed")
        #expect((result["error"] as? String)?.contains("runner restarted while running") == true, "\(result["error"] ?? "")")
        #expect(elapsed < .seconds(3 + 5), "terminal within the lease and a few seconds: \(elapsed)")
        #expect(await eventually { survivors(of: "stranded").isEmpty }, "the stranded agent was ended")
    }

    /// Counts regular files under `path`.
    static func fileCount(_ path: String) -> Int {
        FileManager.default.enumerator(atPath: path)?.allObjects.count ?? 0
    }

    @Test func aCheckoutOverItsBudgetStopsWritingAndStaysRegistered() async throws {
        let repo = dir.child("tree-60k")
        let make = try CommandRunner.run("/usr/bin/env", ["python3", "\(TestPaths.packageRoot)/canaries/make_tree.py", repo, "60000"])
        #expect(make.exitCode == 0, "\(make.stderr)")
        let state = dir.child("checkout-budget")
        let server = ServerProcess(stateDir: state)
        try await server.start()
        defer { server.stop() }
        let clock = ContinuousClock()
        let start = clock.now
        _ = try await server.dispatch([
            "requestId": "big-checkout", "task": "fake:answer=never", "tool": "codex", "executionMode": "sandbox", "cwd": repo, "timeout": 1,
        ])
        let reply = try await server.send(.GET, "/internal/agent-await/big-checkout?timeoutMs=30000")
        let elapsed = clock.now - start
        let result = try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
        #expect(result["status"] as? String == "failed")
        let error = result["error"] as? String ?? ""
        #expect(error.contains("timed out after") && error.contains("during checkout"), "\(error)")
        #expect(elapsed < .seconds(1) + .seconds(3), "ended within the grace: \(elapsed)")
        let path = try #require((result["localSandbox"] as? [String: Any])?["path"] as? String, "the partial sandbox is named")
        let before = Self.fileCount(path)
        try await Task.sleep(for: .seconds(1))
        #expect(Self.fileCount(path) == before, "no thread goes on writing after the dispatch ended (\(before) entries)")
        #expect(before < 60_000, "the checkout was cut short (\(before) entries)")
        let listed = try CommandRunner.run(TestPaths.dispatchBinary, ["sandboxes", "list", "--json"], environment: ["DISPATCH_STATE_DIR": state])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(rows.contains { $0["path"] as? String == path && $0["state"] as? String == "failed" }, "registered for the janitor: \(listed.stdout)")
    }
}
