import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct DurabilityCLITests {
    let dir = TempDir("durability-cli")
    var env: [String: String] {
        ["DISPATCH_STATE_DIR": dir.child("state"), "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "1000"]
    }

    /// `dispatch run` under `canaries/peak_rss.py`: the result, its wall time and the peak RSS of the whole tree.
    func measured(_ arguments: [String], extra: [String: String] = [:]) throws -> (result: CommandResult, seconds: Double, peakMiB: Double) {
        let clock = ContinuousClock()
        let start = clock.now
        let run = try CommandRunner.run(
            "/usr/bin/env",
            ["python3", "\(TestPaths.packageRoot)/canaries/peak_rss.py", TestPaths.dispatchBinary] + arguments,
            environment: env.merging(extra) { $1 },
            cwd: dir.path
        )
        let elapsed = clock.now - start
        let kib = run.stderr.split(separator: "\n").last { $0.hasPrefix("peak-rss-kib ") }.flatMap { Double($0.split(separator: " ")[1]) } ?? -1
        return (run, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, kib / 1024)
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func aFloodingAgentIsEndedAtTheLogLimitNamingTheStream() throws {
        let (run, seconds, peak) = try measured(
            ["run", "--tool", "codex", "--task", "fake:big-output=2000000000 fake:answer=never", "--request-id", "flood", "--json"],
            extra: ["DISPATCH_MAX_LOG_BYTES": "20000000"]
        )
        #expect(run.exitCode == 1, "\(run.stderr)")
        let result = try json(run.stdout)
        #expect(result["status"] as? String == "failed")
        #expect(result["error"] as? String == "codex stdout exceeded the log limit of 20000000 bytes during agent attempt 1/1")
        let path = try #require((result["logs"] as? [String: Any])?["stdoutPath"] as? String)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size < 40_000_000, "the log stays near the limit: \(size) bytes")
        #expect(seconds < 30, "ended within seconds of crossing the limit: \(seconds) s")
        #expect(peak < 200, "peak RSS \(peak) MiB")
        #expect(survivors(of: "flood").isEmpty)
    }

    @Test func aFinalAnswerAfter300MBOf50MBLinesIsFoundInBoundedMemory() throws {
        let (run, seconds, peak) = try measured(
            ["run", "--tool", "codex", "--task", "fake:big-lines=6:50000000 fake:answer=after-the-flood", "--request-id", "lines", "--json"])
        #expect(run.exitCode == 0, "\(run.stderr.suffix(500))")
        let result = try json(run.stdout)
        #expect(result["status"] as? String == "completed", "\(result["error"] ?? "")")
        #expect(result["result"] as? String == "after-the-flood")
        #expect(seconds < 30, "\(seconds) s")
        #expect(peak < 200, "peak RSS \(peak) MiB")
    }

    @Test func sighupToDispatchRunActsAsSigterm() async throws {
        let run = try CommandRunner.start(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:hang", "--request-id", "hup", "--json"],
            environment: env,
            cwd: dir.path
        )
        #expect(await eventually { !survivors(of: "hup").isEmpty })
        kill(run.pid, SIGHUP)
        let result = run.wait()
        #expect(result.exitCode == 130, "\(result.stderr)")
        #expect(try json(result.stdout)["status"] as? String == "cancelled")
        #expect(await eventually { survivors(of: "hup").isEmpty }, "no agent left")
    }

    @Test func aHugeUntrackedFileIsTouchedButLeftOutOfAPatchThatStillApplies() throws {
        let repo = dir.child("huge-repo")
        let base = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let (run, _, peak) = try measured([
            "run", "--tool", "codex", "--mode", "sandbox", "--cwd", repo, "--request-id", "huge", "--json",
            "--task", "fake:sparse=big.bin:419430400 fake:write=a.txt:changed fake:answer=done",
        ])
        #expect(run.exitCode == 0, "\(run.stderr.suffix(400))")
        let result = try json(run.stdout)
        #expect(result["status"] as? String == "completed", "\(result["error"] ?? "")")
        let artifacts = try #require(result["artifacts"] as? [String: Any])
        #expect(artifacts["touchedFiles"] as? [String] == ["a.txt", "big.bin"])
        let omitted = try #require(artifacts["omittedFromPatch"] as? [[String: Any]])
        #expect(omitted.count == 1)
        #expect(omitted.first?["path"] as? String == "big.bin")
        #expect((omitted.first?["bytes"] as? NSNumber)?.int64Value == 419_430_400)
        #expect((omitted.first?["reason"] as? String)?.contains("larger than 67108864 bytes") == true)
        let patch = try #require(artifacts["patch"] as? String)
        #expect(!patch.contains("big.bin") && patch.contains("+changed"))
        let check = dir.child("huge-check")
        try GitFixture.git(["clone", "-q", repo, check], in: dir.path)
        try GitFixture.git(["checkout", "-q", base], in: check)
        let patchPath = try #require(artifacts["patchPath"] as? String)
        try GitFixture.git(["apply", "--check", "--binary", patchPath], in: check)
        #expect(peak < 300, "peak RSS \(peak) MiB")
    }

    @Test func aResultTheStoreWillNotTakeIsNeverReportedAndIsReconciledLater() throws {
        let faulty = env.merging(["DISPATCH_FAULT_STORE_WRITES": "terminal", "DISPATCH_STORE_RETRY_SECONDS": "1"]) { $1 }
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:answer=unstored", "--request-id", "unstored", "--json"],
            environment: faulty,
            cwd: dir.path
        )
        #expect(run.exitCode == 1)
        #expect(!run.stdout.contains("completed"), "no unstored completed is printed: \(run.stdout)")
        #expect(run.stderr.contains("could not be stored"), "\(run.stderr)")
        let status = try CommandRunner.run(TestPaths.dispatchBinary, ["status", "unstored", "--json"], environment: env, cwd: dir.path)
        let reconciled = try json(status.stdout)
        #expect(reconciled["status"] as? String == "failed", "the next look reconciles from what was committed")
        #expect((reconciled["error"] as? String)?.contains("runner exited while running") == true, "\(reconciled["error"] ?? "")")
        let inbox = try json(String(contentsOfFile: "\(dir.child("state"))/inbox/unstored.json", encoding: .utf8))
        #expect(inbox["status"] as? String == "failed", "the inbox follows the committed row")
    }

    @Test func aTerminalWriteThatFailsForAWhileIsRetried() throws {
        let flaky = env.merging(["DISPATCH_FAULT_STORE_WRITES": "terminal:3", "DISPATCH_STORE_RETRY_SECONDS": "10"]) { $1 }
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:answer=stored-at-last", "--request-id", "flaky", "--json"],
            environment: flaky,
            cwd: dir.path
        )
        #expect(run.exitCode == 0, "\(run.stdout) \(run.stderr)")
        #expect(try json(run.stdout)["result"] as? String == "stored-at-last", "\(run.stdout)")
        let inbox = try json(String(contentsOfFile: "\(dir.child("state"))/inbox/flaky.json", encoding: .utf8))
        #expect(inbox["status"] as? String == "completed")
    }

    @Test func anAgentDiesWithItsKilledDispatchRunAndTheRowResolvesAtTheNextLook() async throws {
        let run = try CommandRunner.start(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:hang", "--request-id", "kill9", "--json"],
            environment: env,
            cwd: dir.path
        )
        #expect(await eventually { !survivors(of: "kill9").isEmpty })
        kill(run.pid, SIGKILL)
        _ = run.wait()
        #expect(await eventually(timeout: .seconds(5)) { survivors(of: "kill9").isEmpty }, "the agent died with its runner")
        let status = try CommandRunner.run(TestPaths.dispatchBinary, ["status", "kill9", "--json"], environment: env, cwd: dir.path)
        #expect(try json(status.stdout)["status"] as? String == "failed", "\(status.stdout)")
    }

    @Test func theOrphanStderrCanaryProvesTheResultDidNotWaitForTheOrphan() throws {
        let request = dir.child("orphan.json")
        try #"{"requestId":"orphan-2","task":"t","tool":"canary","canary":{"scenario":"orphan-stderr","orphanDelaySeconds":2,"exitCode":7}}"#
            .write(toFile: request, atomically: true, encoding: .utf8)
        let clock = ContinuousClock()
        let start = clock.now
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["run", "--request", request, "--json"], environment: env, cwd: dir.path)
        let elapsed = clock.now - start
        #expect(run.exitCode == 1)
        let result = try json(run.stdout)
        #expect((result["error"] as? String)?.contains("exit 7") == true, "\(result["error"] ?? "")")
        #expect(elapsed < .milliseconds(1500), "delay 2, exit 7 → result in under 1.5 s: \(elapsed)")
        let canary = try CommandRunner.run(TestPaths.dispatchBinary, ["canary", "orphan-stderr"], environment: env, cwd: dir.path)
        #expect(canary.exitCode == 0, "\(canary.stdout)")
        #expect(canary.stdout.contains("written-while-orphan-held-stderr") && canary.stdout.contains("before the orphan let go"))
    }
}
