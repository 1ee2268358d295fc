import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct OperatorCLITests {
    let dir = TempDir("operator")

    @Test func operatorCommandsAndCanariesWorkOverHTTP() async throws {
        let server = ServerProcess(stateDir: dir.child("state"))
        try await server.start()
        defer { server.stop() }
        let env = [
            "DISPATCH_URL": "http://127.0.0.1:\(server.port)", "DISPATCH_TOKEN": "test-token-0123456789abcdef0123456789abcdef",
            "DISPATCH_STATE_DIR": dir.child("client"),
        ]
        func dispatch(_ arguments: [String]) throws -> CommandResult {
            try CommandRunner.run(TestPaths.dispatchBinary, arguments, environment: env)
        }

        _ = try await server.dispatch(["requestId": "op-1", "task": "fake:sleep=1 fake:answer=over-http", "tool": "codex"])
        let awaited = try dispatch(["await", "op-1", "--json"])
        #expect(awaited.exitCode == 0, "\(awaited.stderr)")
        #expect(awaited.stdout.contains("\"result\":\"over-http\""))
        #expect(try dispatch(["status", "op-1"]).stdout.contains("\"status\":\"completed\""))
        #expect(try dispatch(["list", "--json"]).stdout.contains("\"requestId\":\"op-1\""))
        #expect(try dispatch(["logs", "op-1"]).stdout.contains("item.completed"))
        #expect(try dispatch(["status", "missing"]).exitCode == 1)

        _ = try await server.dispatch(["requestId": "op-2", "task": "fake:hang", "tool": "codex"])
        #expect(await eventually { !survivors(of: "op-2").isEmpty })
        let follow = try CommandRunner.start(TestPaths.dispatchBinary, ["logs", "op-2", "--follow"], environment: env)
        let cancelled = try dispatch(["cancel", "op-2"])
        #expect(cancelled.exitCode == 0, "\(cancelled.stderr)")
        #expect(cancelled.stdout.contains("\"status\":\"cancelled\""))
        #expect(follow.wait().exitCode == 0, "logs --follow ends when the request is terminal")
        #expect(try dispatch(["cancel", "op-2"]).exitCode == 1)
        let awaitCancelled = try dispatch(["await", "op-2"])
        #expect(awaitCancelled.exitCode == 130)

        let canary = try dispatch(["canary", "orphan-stderr"])
        #expect(canary.exitCode == 0, "\(canary.stdout)\n\(canary.stderr)")
        let timeout = try dispatch(["canary", "sleep-timeout", "--timeout", "3"])
        #expect(timeout.exitCode == 0, "\(timeout.stdout)\n\(timeout.stderr)")
    }
}
