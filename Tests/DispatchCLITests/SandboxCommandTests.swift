import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct SandboxCommandTests {
    let dir = TempDir("cli-sandbox")
    var env: [String: String] {
        ["DISPATCH_STATE_DIR": dir.child("state"), "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "1000"]
    }

    func dispatch(_ arguments: [String]) throws -> CommandResult {
        try CommandRunner.run(TestPaths.dispatchBinary, arguments, environment: env, cwd: dir.path)
    }

    @Test func sleepTimeoutCanaryPasses() throws {
        let result = try dispatch(["canary", "sleep-timeout", "--timeout", "3"])
        #expect(result.exitCode == 0, "\(result.stdout)\n\(result.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(report?["ok"] as? Bool == true)
    }

    @Test func sandboxRunListAndCleanup() throws {
        let repo = dir.child("repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "a\n"])
        let run = try dispatch([
            "run", "--tool", "codex", "--task", "fake:write=b.txt:b", "--mode", "sandbox", "--cwd", repo, "--request-id", "sb-1",
            "--verify", "test -f b.txt", "--json",
        ])
        #expect(run.exitCode == 0, "\(run.stderr)")
        let result = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Any]
        let artifacts = result["artifacts"] as! [String: Any]
        #expect(artifacts["touchedFiles"] as? [String] == ["b.txt"])
        #expect(result["sandboxBackend"] as? String == "local")

        let list = try dispatch(["sandboxes", "list", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as! [[String: Any]]
        #expect(rows.count == 1)
        #expect(Set(rows[0].keys) == ["sandboxId", "requestId", "state", "path", "baseSha", "createdAt", "updatedAt", "cleanupAfter"])
        #expect(rows[0]["state"] as? String == "completed")
        let path = rows[0]["path"] as! String

        let dry = try dispatch(["sandboxes", "cleanup", "--request-id", "sb-1", "--dry-run"])
        #expect(dry.stdout.contains("would-remove"))
        #expect(FileManager.default.fileExists(atPath: path))
        let removed = try dispatch(["sandboxes", "cleanup", "--request-id", "sb-1"])
        #expect(removed.exitCode == 0)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try dispatch(["sandboxes", "list", "--state", "removed", "--json"]).stdout.contains("sb-1"))
        #expect(try dispatch(["sandboxes", "cleanup"]).exitCode == 2)
        #expect(try dispatch(["sandboxes", "janitor"]).exitCode == 0)
    }

    @Test func killedRunnerLeavesNoRunningSandbox() async throws {
        let repo = dir.child("repo2")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "a\n"])
        let run = try CommandRunner.start(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:write=p.txt:partial fake:hang", "--mode", "sandbox", "--cwd", repo, "--request-id", "sb-k9"],
            environment: env,
            cwd: dir.path
        )
        #expect(await eventually { !survivors(of: "sb-k9").isEmpty })
        try await Task.sleep(for: .milliseconds(300))
        kill(run.pid, SIGKILL)
        _ = run.wait()
        let list = try dispatch(["sandboxes", "list", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as! [[String: Any]]
        #expect(rows.first?["state"] as? String == "failed")
        let status = try JSONSerialization.jsonObject(with: Data(try dispatch(["status", "sb-k9"]).stdout.utf8)) as! [String: Any]
        #expect(status["status"] as? String == "failed")
        #expect((status["artifacts"] as? [String: Any])?["touchedFiles"] as? [String] == ["p.txt"], "partial work is exported")
        #expect(survivors(of: "sb-k9").isEmpty)
    }
}
