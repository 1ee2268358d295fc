import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct SecurityCLITests {
    let dir = TempDir("security-cli")
    var state: String { dir.child("state") }
    var env: [String: String] { ["DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "1000"] }

    @Test func hostileFieldsExitTwoNamingTheFieldAndSpawnNothing() throws {
        let argvLog = dir.child("argv.jsonl")
        for (index, row) in HostileFields.table.enumerated() {
            var body: [String: Any] = ["requestId": "cli-hostile-\(index)", "task": "fake:answer=x", "tool": "codex"]
            for (key, value) in row.fields { body[key] = value }
            let file = dir.child("hostile-\(index).json")
            try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: file))
            let run = try CommandRunner.run(
                TestPaths.dispatchBinary,
                ["run", "--request", file],
                environment: env.merging(["FAKE_AGENT_ARGV_LOG": argvLog]) { $1 },
                cwd: dir.path
            )
            #expect(run.exitCode == 2, "\(row.name): \(run.stderr)")
            #expect(run.stderr.contains("invalid \(row.field)"), "\(row.name): \(run.stderr)")
            #expect(!run.stderr.contains("S3cret"), "\(row.name)")
        }
        #expect(!FileManager.default.fileExists(atPath: argvLog), "no agent was started")
        let inbox = (try? FileManager.default.contentsOfDirectory(atPath: "\(state)/inbox")) ?? []
        #expect(inbox.isEmpty, "nothing recorded: \(inbox)")
    }

    /// The runner's own files are private; an agent's files in the host checkout carry the operator's umask.
    @Test func agentsKeepTheOperatorsUmaskWhileTheRunnerWritesPrivately() throws {
        let work = dir.child("checkout")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let script = "umask 022; exec \"$0\" \"$@\""
        let run = try CommandRunner.run(
            "/bin/sh",
            [
                "-c", script, TestPaths.dispatchBinary, "run", "--tool", "codex", "--task", "fake:write=made-by-agent.txt:x fake:answer=ok",
                "--cwd", work, "--request-id", "umask-1", "--json",
            ],
            environment: env,
            cwd: dir.path
        )
        #expect(run.exitCode == 0, "\(run.stderr)")
        var info = stat()
        #expect(stat("\(work)/made-by-agent.txt", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o644, "the agent's file looks as it would without us: \(String(info.st_mode & 0o777, radix: 8))")
        for path in ["\(state)/inbox/umask-1.json", "\(state)/dispatch.sqlite", "\(state)/runs/umask-1"] {
            #expect(stat(path, &info) == 0, "\(path)")
            #expect(info.st_mode & 0o077 == 0, "\(path) is private: \(String(info.st_mode & 0o777, radix: 8))")
        }
    }

    /// Under isolation too the agent's files carry the operator's umask, whatever it is: `dispatch run` holds the agent
    /// through the guard, `serve` through the per-run monitor — neither may impose one of its own (it imposed 022).
    @Test func isolatedAgentsKeepAnOperatorUmaskOf027ThroughTheGuardAndTheMonitor() async throws {
        let launcher = ["/bin/sh", "-c", "umask 027; exec \"$0\" \"$@\""]
        let work = dir.child("checkout-027")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        var environment = env
        environment["DISPATCH_ISOLATION"] = "bwrap"
        environment["DISPATCH_AGENT_USER"] = "root"
        let run = try CommandRunner.run(
            launcher[0],
            Array(launcher.dropFirst()) + [
                TestPaths.dispatchBinary, "run", "--tool", "codex", "--task", "fake:write=by-guard.txt:x fake:answer=ok", "--cwd", work,
                "--request-id", "umask-guard", "--json",
            ],
            environment: environment,
            cwd: dir.path
        )
        #expect(run.exitCode == 0, "\(run.stderr)")
        let server = ServerProcess(stateDir: dir.child("state-027"), environment: environment, launcher: launcher)
        try await server.start()
        defer { server.stop() }
        let reply = try await server.dispatch([
            "requestId": "umask-monitor", "task": "fake:write=by-monitor.txt:x fake:answer=ok", "tool": "codex", "cwd": work,
        ])
        #expect(reply.status == 202 || reply.status == 200, "\(reply.text)")
        let done = try await server.send(.GET, "/internal/agent-await/umask-monitor?timeoutMs=30000")
        #expect(done.text.contains("\"completed\""), "\(done.text)")
        for name in ["by-guard.txt", "by-monitor.txt"] {
            var info = stat()
            #expect(stat("\(work)/\(name)", &info) == 0, "\(name)")
            #expect(info.st_mode & 0o777 == 0o640, "\(name) has the operator's umask: \(String(info.st_mode & 0o777, radix: 8))")
        }
    }
}
