import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// CONTRACT §7 under bubblewrap, through the real `dispatch`: nothing an agent starts outlives its dispatch, the
/// runner's secrets are out of its sight, a sandboxed agent writes only its own checkout. Each check is also run
/// with `DISPATCH_ISOLATION=none` where that must fail, so the check itself can fail.
@Suite(.serialized, .enabled(if: Bubblewrap.locate() != nil, "bubblewrap is not installed (make deps installs it)"))
struct IsolationTests {
    let dir = TempDir("isolation")
    var state: String { dir.child("state") }

    /// The environment of a run with `isolation`; `none` also turns the per-run cgroups off, so that nothing
    /// contains the agent (the cgroup's final kill would end the escapees too).
    func env(_ isolation: String) -> [String: String] {
        var env = [
            "DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "500",
            "DISPATCH_ISOLATION": isolation,
        ]
        if isolation == "none" { (env["DISPATCH_MAX_PROCESSES"], env["DISPATCH_MAX_MEMORY_BYTES"]) = ("0", "0") }
        return env
    }

    func dispatch(_ arguments: [String], isolation: String = "bwrap", cwd: String? = nil) throws -> CommandResult {
        try CommandRunner.run(TestPaths.dispatchBinary, arguments, environment: env(isolation), cwd: cwd ?? dir.path)
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
    }

    /// Processes whose command line is exactly `sleep <seconds>`.
    static func sleepers(_ seconds: String) -> [pid_t] { DispatchTestSupport.sleepers(seconds) }

    /// Waits up to `within` for every sleeper of `seconds` to be gone; returns the ones still alive.
    static func survivors(_ seconds: String, within: Duration = .seconds(5)) async -> [pid_t] {
        let clock = ContinuousClock()
        let end = clock.now + within
        while clock.now < end {
            if sleepers(seconds).isEmpty { return [] }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return sleepers(seconds)
    }

    static func unique() -> (plain: String, stubborn: String) {
        let tag = Int.random(in: 100_000...999_999)
        return ("61.\(tag)", "62.\(tag)")
    }

    @Test(arguments: ["host", "sandbox", "timeout"])
    func escapedDescendantsDieWithTheirDispatch(_ path: String) async throws {
        let repo = dir.child("repo-\(path)")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let seconds = Self.unique()
        var task = "fake:escape=\(seconds.plain) fake:escape-stubborn=\(seconds.stubborn)"
        var arguments = ["run", "--tool", "codex", "--json"]
        if path == "sandbox" { arguments += ["--mode", "sandbox", "--base-sha", "HEAD"] }
        if path == "timeout" {
            task += " fake:hang"
            arguments += ["--timeout", "2"]
        }
        let result = try dispatch(arguments + ["--task", task], cwd: repo)
        #expect(try json(result.stdout)["status"] as? String == (path == "timeout" ? "failed" : "completed"), "\(result.stderr)")
        #expect(await Self.survivors(seconds.plain).isEmpty, "the plain escapee outlived its dispatch")
        #expect(await Self.survivors(seconds.stubborn).isEmpty, "the SIGTERM-deaf escapee outlived its dispatch")
    }

    @Test func withoutIsolationTheEscapeesSurviveSoTheCheckCanFail() async throws {
        let seconds = Self.unique()
        let result = try dispatch(
            ["run", "--tool", "codex", "--json", "--task", "fake:escape=\(seconds.plain) fake:escape-stubborn=\(seconds.stubborn)"],
            isolation: "none"
        )
        #expect(try json(result.stdout)["status"] as? String == "completed", "\(result.stderr)")
        let left = Self.sleepers(seconds.plain) + Self.sleepers(seconds.stubborn)
        #expect(left.count == 2, "process groups and markers cannot find a setsid, environment-cleared grandchild")
        for pid in left { kill(pid, SIGKILL) }
    }

    /// bwrap arms its namespace's init with the death signal only after the namespace is set up; a runner killed
    /// meanwhile must still take its agent down. A `bwrap` in front of the real one holds that moment open until
    /// the test has killed the runner, in the same way: the part that goes on to start the agent is forked and arms nothing; without the guard in
    /// front of bwrap it survives the runner, and so does its agent.
    @Test(arguments: [false, true])
    func aRunnerKilledWhileTheNamespaceIsSetUpTakesItsAgentDown(_ withGuard: Bool) async throws {
        let bin = dir.child("slow-bwrap-\(withGuard)")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let slow = """
            #!/usr/bin/env python3
            import os, sys, time
            child = os.fork()
            if child == 0:
                if "fake:hang" in sys.argv:
                    open("\(bin)/forked", "w").close()
                    # Armed by nobody until the test has killed the runner (at most 5 s).
                    for _ in range(500):
                        if os.path.exists("\(bin)/go"):
                            break
                        time.sleep(0.01)
                else:
                    time.sleep(0.3)
                os.execv("\(try #require(Bubblewrap.locate()))", ["bwrap"] + sys.argv[1:])
            status = os.waitpid(child, 0)[1]
            sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))

            """
        try slow.write(toFile: "\(bin)/bwrap", atomically: true, encoding: .utf8)
        chmod("\(bin)/bwrap", 0o755)
        let id = "setup-kill-\(withGuard)"
        var environment = env("bwrap").merging(["PATH": "\(bin):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"]) { $1 }
        if !withGuard {
            // The monitor without its guard: what would start `--guard` starts its command directly (the bridge of the
            // agent's network is still the real one).
            let monitor = "\(bin)/dispatch-monitor"
            let real = URL(fileURLWithPath: TestPaths.dispatchBinary).deletingLastPathComponent().appendingPathComponent("dispatch-monitor").path
            let script = "#!/bin/sh\nif [ \"$1\" = --guard ]; then shift 3; shift; exec \"$@\"; fi\nexec '\(real)' \"$@\"\n"
            try script.write(toFile: monitor, atomically: true, encoding: .utf8)
            chmod(monitor, 0o755)
            environment["DISPATCH_MONITOR_BIN"] = monitor
        }
        let run = try CommandRunner.start(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:hang", "--request-id", id, "--json"],
            environment: environment,
            cwd: dir.path
        )
        defer { DispatchTestSupport.killSurvivors(of: id) }
        #expect(await eventually { FileManager.default.fileExists(atPath: "\(bin)/forked") })
        kill(run.pid, SIGKILL)
        _ = run.wait()
        FileManager.default.createFile(atPath: "\(bin)/go", contents: Data())
        try await Task.sleep(for: .milliseconds(600))
        let gone = await eventually(timeout: .seconds(3)) { DispatchTestSupport.survivors(of: id).isEmpty }
        #expect(gone == withGuard, withGuard ? "the agent outlived its killed runner" : "without the guard the agent survives, so the check can fail")
    }

    /// The self-check is remembered in the state dir while what it depends on holds: the second `dispatch run`
    /// starts no check; a changed `bwrap` is checked again.
    @Test func aPassedSelfCheckIsRememberedUntilBwrapChanges() throws {
        let bin = dir.child("counting-bwrap")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let checks = dir.child("self-checks")
        let counting = "#!/bin/sh\ncase \"$*\" in *CapEff*) echo check >> '\(checks)';; esac\nexec \(try #require(Bubblewrap.locate())) \"$@\"\n"
        try counting.write(toFile: "\(bin)/bwrap", atomically: true, encoding: .utf8)
        chmod("\(bin)/bwrap", 0o755)
        let environment = env("bwrap").merging(["PATH": "\(bin):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"]) { $1 }
        func run() throws {
            let result = try CommandRunner.run(
                TestPaths.dispatchBinary,
                ["run", "--tool", "codex", "--task", "fake:answer=ok", "--json"],
                environment: environment,
                cwd: dir.path
            )
            #expect(result.exitCode == 0, "\(result.stderr)")
        }
        func count() -> Int { LogFile.read(checks).split(separator: "\n").count }
        try run()
        try run()
        #expect(count() == 1, "checked once, then remembered")
        #expect(FileManager.default.fileExists(atPath: "\(state)/isolation-check.json"))
        try (counting + "# changed\n").write(toFile: "\(bin)/bwrap", atomically: true, encoding: .utf8)
        chmod("\(bin)/bwrap", 0o755)
        try run()
        #expect(count() == 2, "a changed bwrap is checked again")
    }

    /// What a probing agent finds with `isolation`, after an earlier request left its result in the inbox and the
    /// database, with the token both in the runner's environment and in a token file.
    func probe(_ isolation: String, token: String) throws -> String {
        let tokenFile = dir.child("token-file")
        try Data(token.utf8).write(to: URL(fileURLWithPath: tokenFile))
        let repo = dir.child("probe-repo-\(isolation)")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let probe = dir.child("probe-\(isolation).txt")
        // The fake agent reads every file (and small directory) an absolute path in its environment names.
        let environment = env(isolation).merging([
            "DISPATCH_TOKEN_FILE": tokenFile, "DISPATCH_TOKEN": token, "FAKE_AGENT_PROBE_TOKEN": tokenFile,
            "FAKE_AGENT_PROBE_STATE": state, "FAKE_AGENT_PROBE_INBOX": "\(state)/inbox",
        ]) { $1 }
        let earlier = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--json", "--task", "fake:answer=earlier-\(token)"],
            environment: environment,
            cwd: repo
        )
        #expect(earlier.exitCode == 0, "\(earlier.stderr)")
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--json", "--task", "fake:probe=\(probe)"],
            environment: environment,
            cwd: repo
        )
        #expect(run.exitCode == 0, "\(run.stderr)")
        return try String(contentsOfFile: probe, encoding: .utf8)
    }

    @Test func theAgentSeesNothingOfTheRunner() throws {
        let token = "isolation-secret-\(UUID().uuidString)"
        let open = try probe("none", token: token)
        #expect(open.contains(token), "without isolation the probe finds the token, so this check can fail")
        let seen = try probe("bwrap", token: token)
        #expect(!seen.contains(token), "the token (its file, the runner's environment, the earlier result) leaked to the agent")
        #expect(!seen.contains("DISPATCH_TOKEN="), "the runner's environment is out of sight")
    }

    @Test func serveReportsBwrapAndItsAgentsFindNoneOfItsSecrets() async throws {
        let token = "serve-isolation-\(UUID().uuidString)-0123456789abcdef"
        let tokenFile = dir.child("serve-token")
        try Data(token.utf8).write(to: URL(fileURLWithPath: tokenFile))
        let serveState = dir.child("serve-state")
        let server = ServerProcess(
            stateDir: serveState,
            token: token,
            environment: [
                "DISPATCH_ISOLATION": "bwrap", "DISPATCH_TOKEN_FILE": tokenFile, "FAKE_AGENT_PROBE_TOKEN": tokenFile,
                "FAKE_AGENT_PROBE_STATE": serveState, "FAKE_AGENT_PROBE_INBOX": "\(serveState)/inbox",
            ]
        )
        try await server.start()
        defer { server.stop() }
        let info = try await server.send(.GET, "/").json
        #expect(info?["isolation"] as? String == "bwrap")
        if geteuid() == 0 {
            // A root runner: sandboxed agents on leased uids; host mode as the work dir's owner, except for root-owned
            // work dirs, which the tests run as root (DISPATCH_AGENT_USER=root, the explicit opt-out).
            #expect(info?["agentUser"] as? String == "root-unsafe", "\(info ?? [:])")
            #expect(info?["agentUsers"] as? [String: String] == ["sandbox": "leased", "host": "root-unsafe"], "\(info ?? [:])")
        }
        let repo = dir.child("serve-repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        _ = try await server.dispatch(["requestId": "serve-earlier", "task": "fake:answer=earlier-\(token)", "tool": "codex", "cwd": repo])
        #expect(try await server.send(.GET, "/internal/agent-await/serve-earlier?timeoutMs=30000").status == 200)
        let probe = dir.child("serve-probe.txt")
        _ = try await server.dispatch(["requestId": "serve-probe", "task": "fake:probe=\(probe)", "tool": "codex", "cwd": repo])
        let done = try await server.send(.GET, "/internal/agent-await/serve-probe?timeoutMs=30000")
        #expect((done.json?["result"] as? [String: Any])?["status"] as? String == "completed", "\(done.text)")
        let seen = try String(contentsOfFile: probe, encoding: .utf8)
        #expect(!seen.contains(token), "the serve token or another request's result reached the agent")
        #expect(seen.contains("FAKE_AGENT_PROBE_STATE"), "the probe ran and read its environment")
    }

    @Test func aSandboxedAgentWritesOnlyItsOwnCheckout() async throws {
        let repo = dir.child("host-repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let task = "fake:write=b.txt:mine fake:write=\(repo)/a.txt:tampered"
        let result = try dispatch(["run", "--tool", "codex", "--json", "--mode", "sandbox", "--base-sha", "HEAD", "--task", task], cwd: repo)
        let document = try json(result.stdout)
        #expect(try String(contentsOfFile: "\(repo)/a.txt", encoding: .utf8) == "alpha\n", "the host checkout is unchanged")
        let artifacts = document["artifacts"] as? [String: Any]
        #expect((artifacts?["touchedFiles"] as? [String])?.contains("b.txt") == true, "the own checkout's write is in the patch: \(document)")
        #expect(document["status"] as? String == "failed", "writing the host checkout failed the agent: \(document["error"] ?? "")")
    }

    /// CONTRACT §1/§7: under isolation a sandboxed agent gets `IS_SANDBOX=1` (then true), a host-mode one does not —
    /// seen through Claude Code's rule as root, which the runner checks against the agent's own environment.
    @Test(.enabled(if: geteuid() == 0, "the IS_SANDBOX rule is Claude Code's as root"))
    func onlyAnIsolatedSandboxTellsClaudeItIsSandboxed() throws {
        let repo = dir.child("claude-repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        func run(_ extra: [String], isolation: String) throws -> [String: Any] {
            var environment = env(isolation)
            environment["DISPATCH_CLAUDE_BIN"] = TestPaths.fake("claude")
            environment["IS_SANDBOX"] = nil
            let arguments = ["run", "--tool", "claude", "--json", "--task", "fake:answer=ok"] + extra
            return try json(try CommandRunner.run(TestPaths.dispatchBinary, arguments, environment: environment, cwd: repo).stdout)
        }
        let sandboxed = try run(["--mode", "sandbox", "--base-sha", "HEAD"], isolation: "bwrap")
        #expect(sandboxed["status"] as? String == "completed", "\(sandboxed["error"] ?? "")")
        let host = try run([], isolation: "bwrap")
        #expect((host["error"] as? String)?.contains("unless IS_SANDBOX=1") == true, "host mode is not a sandbox: \(host)")
        let unisolated = try run(["--mode", "sandbox", "--base-sha", "HEAD"], isolation: "none")
        #expect((unisolated["error"] as? String)?.contains("unless IS_SANDBOX=1") == true, "nor is an unisolated one: \(unisolated)")
    }

    @Test func aHostModeAgentStillEditsItsWorkDir() throws {
        let repo = dir.child("host-edit")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let result = try dispatch(["run", "--tool", "codex", "--json", "--task", "fake:write=a.txt:edited"], cwd: repo)
        #expect(try json(result.stdout)["status"] as? String == "completed", "\(result.stderr)")
        #expect(try String(contentsOfFile: "\(repo)/a.txt", encoding: .utf8) == "edited\n")
    }

    @Test func theEscapeCanaryHoldsUnderBwrapAndFailsWithout() throws {
        let held = try dispatch(["canary", "escape"])
        #expect(held.exitCode == 0, "\(held.stdout)\n\(held.stderr)")
        let report = try json(held.stdout)
        #expect(report["scenario"] as? String == "escape" && report["ok"] as? Bool == true)
        let open = try dispatch(["canary", "escape"], isolation: "none")
        #expect(open.exitCode == 1, "without isolation the canary must fail: \(open.stdout)")
        let checks = try json(open.stdout)["checks"] as? [[String: Any]] ?? []
        let failed = Set(checks.filter { $0["ok"] as? Bool == false }.compactMap { $0["name"] as? String })
        // Every containment check can fail: the token check too, on a state dir without a token file (its secret).
        // The runner here is root: the agent's uid 0 could write a sysctl, and its SysV segment stays in the host's IPC
        // namespace (the check removes it).
        let containment = ["no-surviving-escapee", "state-dir-not-visible", "token-not-readable", "no-ipc-survivor"]
        #expect(failed.isSuperset(of: containment + (geteuid() == 0 ? ["sysctl-not-writable"] : [])), "\(checks)")
        // What the unisolated run left behind: the pids are in the report.
        for check in checks where check["name"] as? String == "no-surviving-escapee" {
            let detail = check["detail"] as? String ?? ""
            for pid in detail.split(whereSeparator: { !$0.isNumber }).compactMap({ pid_t($0) }) { kill(pid, SIGKILL) }
        }
    }

    @Test func doctorReportsTheIsolationAgentsWouldGet() throws {
        let isolated = try json(try dispatch(["doctor"], isolation: "auto").stdout)
        #expect(isolated["isolation"] as? String == "bwrap" && isolated["isolationRequested"] as? String == "auto", "\(isolated)")
        let version = try CommandRunner.run(TestPaths.dispatchBinary, ["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(isolated["version"] as? String == version && isolated["store"] as? String == "sqlite", "\(isolated)")
        let open = try json(try dispatch(["doctor"], isolation: "none").stdout)
        #expect(open["isolation"] as? String == "none" && open["bwrap"] == nil, "\(open)")
    }

    @Test func requiredButUnusableIsolationRefusesToStart() throws {
        var environment = env("bwrap")
        environment["PATH"] = "/nonexistent"
        let result = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "x"],
            environment: environment,
            cwd: dir.path
        )
        #expect(result.exitCode == 2, "\(result.stderr)")
        #expect(result.stderr.contains("DISPATCH_ISOLATION=bwrap"), "\(result.stderr)")
        let doctor = try CommandRunner.run(TestPaths.dispatchBinary, ["doctor"], environment: environment, cwd: dir.path)
        #expect(doctor.exitCode == 2 && doctor.stderr.contains("DISPATCH_ISOLATION=bwrap"), "doctor refuses as run does: \(doctor.stderr)")
        let invalid = try dispatch(["run", "--tool", "codex", "--task", "x"], isolation: "maybe")
        #expect(invalid.exitCode == 2 && invalid.stderr.contains("invalid DISPATCH_ISOLATION maybe"), "\(invalid.stderr)")
    }
}
