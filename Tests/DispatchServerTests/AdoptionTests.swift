import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// Runs outlive their runner (CONTRACT §7): each case of the README's state table, with a real `serve` killed by
/// SIGKILL or handing off on SIGTERM, and a second `serve` on the same state dir.
@Suite(.serialized) struct AdoptionTests {
    let dir = TempDir("adoption")

    /// Monitors need bubblewrap; without it (DISPATCH_ISOLATION=none) runs are abandoned, as the table says.
    var isolated: Bool { ProcessInfo.processInfo.environment["DISPATCH_ISOLATION"] != "none" }

    /// Starts a serve, dispatches `body`, and waits until its agent runs.
    func startRun(
        _ state: String,
        _ body: [String: Any],
        environment: [String: String] = [:],
        arguments: [String] = []
    ) async throws
        -> ServerProcess
    {
        let server = ServerProcess(stateDir: state, environment: environment, extraArguments: arguments)
        try await server.start()
        let reply = try await server.dispatch(body)
        #expect(reply.json?["status"] as? String == "running", "\(reply.text)")
        let id = try #require(body["requestId"] as? String)
        #expect(await eventually { !survivors(of: id).isEmpty }, "the agent of \(id) started")
        return server
    }

    /// The terminal result of `id` as a second serve on `state` ends it.
    func resultAfterRestart(_ state: String, _ id: String, environment: [String: String] = [:]) async throws -> [String: Any] {
        let second = ServerProcess(stateDir: state, environment: environment)
        try await second.start()
        defer { second.stop() }
        let reply = try await second.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000")
        return try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
    }

    /// What the monitor of `id`'s first attempt recorded at its start (host mode).
    func monitorRecord(_ state: String, _ id: String) -> MonitorRecord { MonitorRecord(prefix: "\(state)/runs/\(id)/attempt-1") }

    /// The uid the one sandbox under `state` leased for its agent.
    func leasedUid(_ state: String) -> UInt32? {
        let root = "\(state)/sandboxes"
        let record = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String }.first { $0.hasSuffix("/agent-uid") }
        return record.flatMap { try? String(contentsOfFile: "\(root)/\($0)", encoding: .utf8) }
            .flatMap { UInt32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    @Test func aServeKilledWhileItsAgentWorksIsSucceededByOneThatEndsTheRunWithTheAgentsOwnAnswer() async throws {
        guard isolated else { return }
        let state = dir.child("kill-host")
        let count = dir.child("kill-host.count")
        let first = try await startRun(
            state,
            ["requestId": "adopt-host", "task": "fake:sleep=3 fake:count=\(count) fake:answer=the-agents-own-answer", "tool": "codex"]
        )
        first.stop(SIGKILL)
        #expect(!survivors(of: "adopt-host").isEmpty, "the agent outlives the killed serve")
        let result = try await resultAfterRestart(state, "adopt-host")
        #expect(result["status"] as? String == "completed", "\(result)")
        #expect(result["result"] as? String == "the-agents-own-answer")
        #expect(LogFile.read(count).split(separator: "\n").count == 1, "exactly one execution")
        #expect(await eventually { survivors(of: "adopt-host").isEmpty })
    }

    @Test func aSandboxRunIsAdoptedAndItsChangesLandInThePatch() async throws {
        guard isolated else { return }
        let repo = dir.child("repo")
        _ = try GitFixture.makeRepo(at: repo, files: ["README.md": "base\n"])
        let state = dir.child("kill-sandbox")
        // The count file lies outside the sandbox's writable places, in a directory an operator shares with every
        // agent uid (DISPATCH_AGENT_RW_PATHS).
        let shared = dir.child("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        chmod(shared, 0o1777)
        let count = "\(shared)/kill-sandbox.count"
        let first = try await startRun(
            state,
            [
                "requestId": "adopt-sandbox", "executionMode": "sandbox", "cwd": repo, "tool": "codex",
                "task": "fake:sleep=3 fake:write=adopted.txt:written-while-no-serve-was-up fake:count=\(count) fake:answer=sandbox-done",
                "verificationCommands": ["test -f adopted.txt"],
            ],
            environment: ["DISPATCH_AGENT_RW_PATHS": shared]
        )
        first.stop(SIGKILL)
        // The run's agent uid stays leased while no serve is up (its monitor holds it) and until the run ends.
        let leased = leasedUid(state)
        if geteuid() == 0 {
            let uid = try #require(leased, "the sandbox records its agent's uid")
            #expect(AgentUidLeases().isHeld(uid), "uid \(uid) was let go while its agent ran on without a serve")
        }
        let result = try await resultAfterRestart(state, "adopt-sandbox")
        if let uid = leased { #expect(await eventually { !AgentUidLeases().isHeld(uid) }, "uid \(uid) is free once the run ended") }
        #expect(result["status"] as? String == "completed", "\(result)")
        #expect(result["result"] as? String == "sandbox-done")
        let artifacts = try #require(result["artifacts"] as? [String: Any])
        #expect((artifacts["touchedFiles"] as? [String])?.contains("adopted.txt") == true, "\(artifacts)")
        #expect((artifacts["patch"] as? String)?.contains("+written-while-no-serve-was-up") == true)
        #expect((artifacts["verification"] as? [String: Any])?["success"] as? Bool == true, "verification ran after adoption: \(artifacts)")
        #expect(LogFile.read(count).split(separator: "\n").count == 1, "exactly one execution")
    }

    @Test func handoffOnSigtermExitsAtOnceAndTheNextServeFinishesTheRun() async throws {
        guard isolated else { return }
        let state = dir.child("handoff")
        let count = dir.child("handoff.count")
        let first = try await startRun(
            state,
            ["requestId": "handoff", "task": "fake:sleep=8 fake:count=\(count) fake:answer=handed-off", "tool": "codex"],
            arguments: ["--on-shutdown", "handoff"]
        )
        let clock = ContinuousClock()
        let signalled = clock.now
        let exit = first.stop(SIGTERM)
        #expect(exit?.exitCode == 0, "\(exit?.stderr ?? "")")
        #expect(clock.now - signalled < .seconds(5), "exits at once: \(clock.now - signalled)")
        #expect(!survivors(of: "handoff").isEmpty, "the agent was left running")
        let result = try await resultAfterRestart(state, "handoff")
        #expect(result["status"] as? String == "completed", "\(result)")
        #expect(result["result"] as? String == "handed-off")
        #expect(LogFile.read(count).split(separator: "\n").count == 1, "exactly one execution")
    }

    /// `DISPATCH_ON_SHUTDOWN` is `--on-shutdown` from the environment (CONTRACT §6): read, and refused by name.
    @Test func theShutdownModeComesFromTheEnvironmentToo() throws {
        let refused = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", dir.child("bogus-mode")],
            environment: ["DISPATCH_ON_SHUTDOWN": "bogus", "DISPATCH_TOKEN": "test-token-0123456789abcdef0123456789abcdef"]
        )
        #expect(refused.exitCode == 2)
        #expect(refused.stderr.contains("invalid DISPATCH_ON_SHUTDOWN bogus: must be cancel or handoff"), "\(refused.stderr)")
        let flag = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", dir.child("bogus-flag"), "--on-shutdown", "bogus"],
            environment: ["DISPATCH_ON_SHUTDOWN": "handoff"]
        )
        #expect(flag.exitCode == 2 && flag.stderr.contains("invalid --on-shutdown bogus"), "\(flag.stderr)")
    }

    @Test func aRunThatFinishedWhileNoServeWasUpEndsWithItsRecordedResult() async throws {
        guard isolated else { return }
        let state = dir.child("finished")
        let first = try await startRun(state, ["requestId": "finished", "task": "fake:sleep=1 fake:answer=finished-alone", "tool": "codex"])
        first.stop(SIGKILL)
        let record = monitorRecord(state, "finished")
        #expect(await eventually(timeout: .seconds(10)) { record.ended() != nil }, "the monitor recorded the end")
        #expect(record.ended()?.ending == "exited")
        // A reader in between does not end it: its monitor's record still vouches for it.
        let status = try CommandRunner.run(TestPaths.dispatchBinary, ["status", "finished", "--state-dir", state])
        #expect(status.stdout.contains("\"running\""), "\(status.stdout)\(status.stderr)")
        let result = try await resultAfterRestart(state, "finished")
        #expect(result["status"] as? String == "completed", "\(result)")
        #expect(result["result"] as? String == "finished-alone")
    }

    @Test func whatAnAgentLeavesWhileNoServeIsUpIsEndedByItsMonitor() async throws {
        guard isolated else { return }
        let state = dir.child("left-behind")
        let seconds = "60.\(Int.random(in: 100_000...999_999))"
        let first = try await startRun(
            state,
            ["requestId": "left-behind", "task": "fake:sleep=1.5 fake:escape-stubborn=\(seconds) fake:answer=left", "tool": "codex"]
        )
        first.stop(SIGKILL)
        let record = monitorRecord(state, "left-behind")
        #expect(await eventually(timeout: .seconds(10)) { !sleepers(seconds).isEmpty }, "the agent left its escapee")
        // The kill grace is 1 s in tests: the escapee ignores SIGTERM, and dies with the namespace's init.
        #expect(await eventually(timeout: .seconds(6)) { record.ended() != nil && sleepers(seconds).isEmpty }, "nothing outlives the run")
        let result = try await resultAfterRestart(state, "left-behind")
        #expect(result["result"] as? String == "left", "\(result)")
    }

    @Test func aMonitorNobodyAdoptsWithinALeaseEndsItsRunAsLost() async throws {
        guard isolated else { return }
        let state = dir.child("lost")
        let env = ["DISPATCH_LEASE_SECONDS": "2"]
        let first = try await startRun(state, ["requestId": "lost", "task": "fake:sleep=60 fake:answer=never", "tool": "codex"], environment: env)
        first.stop(SIGKILL)
        // A reader while the serve is dead and its monitor alive leaves the run to the monitor (CONTRACT §7).
        let monitor = try #require(monitorRecord(state, "lost").started())
        let running = try CommandRunner.run(TestPaths.dispatchBinary, ["status", "lost", "--state-dir", state], environment: env)
        #expect(running.stdout.contains("\"running\""), "\(running.stdout)")
        #expect(ProcessScanner.isAlive(monitor.pid), "the monitor was alive after the reader looked")
        #expect(await eventually(timeout: .seconds(10)) { survivors(of: "lost").isEmpty }, "the monitor ended the agent")
        #expect(monitorRecord(state, "lost").ended()?.ending == "runnerLost")
        let status = try CommandRunner.run(TestPaths.dispatchBinary, ["status", "lost", "--state-dir", state], environment: env)
        #expect(status.stdout.contains("\"failed\""), "\(status.stdout)")
        #expect(status.stdout.contains("runner lost"), "\(status.stdout)")
    }

    @Test func aRunWhoseMonitorIsGoneEndsAbandoned() async throws {
        guard isolated else { return }
        let state = dir.child("gone")
        let first = try await startRun(state, ["requestId": "gone", "task": "fake:sleep=60 fake:answer=never", "tool": "codex"])
        first.stop(SIGKILL)
        let monitor = try #require(monitorRecord(state, "gone").started())
        kill(monitor.pid, SIGKILL)
        #expect(await eventually { !ProcessScanner.isAlive(monitor.pid) })
        let result = try await resultAfterRestart(state, "gone")
        #expect(result["status"] as? String == "failed")
        #expect((result["error"] as? String)?.contains("runner restarted while running; execution abandoned") == true, "\(result)")
        let attempts = result["attempts"] as? [[String: Any]] ?? []
        #expect(
            attempts.count == 1 && (attempts.first?["error"] as? String)?.contains("execution abandoned") == true,
            "the agent did start: \(attempts)"
        )
        #expect(await eventually { survivors(of: "gone").isEmpty }, "the next serve ended what the monitor held")
    }

    @Test func theMonitorEndsARunAtItsDeadlineWhileNoServeIsUp() async throws {
        guard isolated else { return }
        let state = dir.child("deadline")
        let first = try await startRun(state, ["requestId": "deadline", "task": "fake:sleep=60 fake:answer=never", "tool": "codex", "timeout": 2])
        first.stop(SIGKILL)
        // The budget, the kill grace (1 s in tests) and the monitor's slack behind a live runner (2 s).
        #expect(await eventually(timeout: .seconds(12)) { survivors(of: "deadline").isEmpty }, "nothing outlives its budget")
        #expect(monitorRecord(state, "deadline").ended()?.ending == "timedOut")
        let result = try await resultAfterRestart(state, "deadline")
        #expect(result["status"] as? String == "failed")
        #expect((result["error"] as? String)?.contains("timed out after") == true, "\(result)")
    }
}
