import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// CONTRACT §7: a run's checkout, logs and home may take at most `DISPATCH_MAX_RUN_DISK_BYTES`; an agent that writes
/// past it is stopped and its run fails `disk limit` — while a run under the limit is left alone.
@Suite(.serialized) struct RunDiskLimitTests {
    let dir = TempDir("disk-limit")

    func run(limit: Int64, task: String, mode: String) throws -> (result: [String: Any], seconds: Double) {
        let repo = dir.child("repo-\(UUID().uuidString.prefix(6))")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let started = Date()
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--json", "--mode", mode, "--timeout", "60", "--task", task],
            environment: [
                "DISPATCH_STATE_DIR": dir.child("state"), "DISPATCH_CODEX_BIN": TestPaths.fake("codex"),
                "DISPATCH_MAX_RUN_DISK_BYTES": "\(limit)", "DISPATCH_KILL_GRACE_MS": "500",
            ],
            cwd: repo
        )
        let result = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
        return (result, Date().timeIntervalSince(started))
    }

    @Test(arguments: ["sandbox", "host"])
    func anAgentWritingPastTheLimitIsStoppedAndItsRunFailsDiskLimit(_ mode: String) throws {
        // 40 MB to the run's stdout log (inside the run's places in both modes), then a long wait.
        let task = "fake:big-output=40000000 fake:sleep=50"
        let over = try run(limit: 20 << 20, task: task, mode: mode)
        #expect(over.result["status"] as? String == "failed", "\(over.result)")
        #expect((over.result["error"] as? String)?.contains("disk limit") == true, "\(over.result["error"] ?? "")")
        #expect(over.seconds < 30, "stopped at the limit, not at the end of the agent's wait (\(over.seconds) s)")
        // What it unlinked but holds open takes the disk too (counted through its processes' fds, its uid being its
        // own: a root runner's).
        if geteuid() == 0, Bubblewrap.locate() != nil, mode == "sandbox" {
            let hidden = try run(limit: 20 << 20, task: "fake:unlinked=41943040:50 fake:answer=x", mode: mode)
            #expect((hidden.result["error"] as? String)?.contains("disk limit") == true, "\(hidden.result["error"] ?? hidden.result)")
            #expect(hidden.seconds < 30)
        }
        // The same agent under a limit it stays inside is left alone.
        let under = try run(limit: 200 << 20, task: "fake:big-output=40000000 fake:sleep=3", mode: mode)
        #expect(under.result["status"] as? String == "completed", "\(under.result)")
    }
}
