import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// CONTRACT §7: a root runner's agents never run as root. Sandboxed agents (and their verification) run as a leased
/// uid, host-mode agents as their work dir's owner; a root-owned work dir is refused unless `DISPATCH_AGENT_USER`
/// says who to run as. Each attack is also run where it must succeed (`DISPATCH_AGENT_USER=root`, isolation `none`),
/// so the check can fail.
@Suite(
    .serialized,
    .enabled(if: Bubblewrap.locate() != nil && geteuid() == 0, "needs bubblewrap (make deps) and a root runner")
)
struct AgentUserTests {
    let dir = TempDir("agent-user")
    var state: String { dir.child("state") }
    /// A root-owned file outside every work dir that no agent may change.
    var rootFile: String { dir.child("root-owned.txt") }
    /// A uid with no account here, outside the leased range: the owner of the host-mode work dirs.
    static let ownerUid: UInt32 = 60_999

    init() throws {
        try Data("keep\n".utf8).write(to: URL(fileURLWithPath: rootFile))
        chmod(rootFile, 0o644)
        // The test dir is a 0700 temp dir: the way to the work dirs in it must be open to their owner.
        chmod(dir.path, 0o755)
    }

    func dispatch(_ arguments: [String], cwd: String, env extra: [String: String] = [:]) throws -> [String: Any] {
        var env = [
            "DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "500",
            "DISPATCH_ISOLATION": "bwrap",
        ]
        env.merge(extra) { $1 }
        let result = try CommandRunner.run(TestPaths.dispatchBinary, ["run", "--tool", "codex", "--json"] + arguments, environment: env, cwd: cwd)
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stderr)")
    }

    static func stderr(_ result: [String: Any]) -> String { ((result["logs"] as? [String: Any])?["stderr"] as? String) ?? "" }

    static func uid(in stderr: String) -> UInt32? {
        guard let range = stderr.range(of: "uid ") else { return nil }
        return UInt32(stderr[range.upperBound...].prefix { $0.isNumber })
    }

    static let attack = "fake:whoami fake:sysctl fake:try-write="

    @Test func aSandboxedAgentAndItsVerificationRunAsALeasedUidAndCannotWriteRootsFilesOrSysctls() throws {
        let repo = dir.child("repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let result = try dispatch(
            [
                "--mode", "sandbox", "--task", Self.attack + rootFile + " fake:write=b.txt:beta fake:commit=second", "--verify",
                "id -u > verify-uid.txt",
            ],
            cwd: repo
        )
        let stderr = Self.stderr(result)
        #expect(result["status"] as? String == "completed", "\(result)")
        let uid = try #require(Self.uid(in: stderr), "\(stderr)")
        #expect(AgentUidLeases.defaultRange.contains(uid), "the sandboxed agent ran as uid \(uid)")
        #expect(stderr.contains("sysctl refused"), "\(stderr)")
        #expect(stderr.contains("write \(rootFile) refused"), "\(stderr)")
        #expect(try String(contentsOfFile: rootFile, encoding: .utf8) == "keep\n")
        // The verification ran as the same uid, and the agent's commit (made with git through the host's objects)
        // is in the patch.
        let sandbox = try #require((result["localSandbox"] as? [String: Any])?["repoPath"] as? String)
        #expect(try String(contentsOfFile: "\(sandbox)/verify-uid.txt", encoding: .utf8) == "\(uid)\n")
        let artifacts = try #require(result["artifacts"] as? [String: Any])
        #expect((artifacts["touchedFiles"] as? [String])?.contains("b.txt") == true, "\(artifacts)")
        // The lease ended with the run.
        #expect(!AgentUidLeases().isHeld(uid), "uid \(uid) is still leased after its run ended")
    }

    @Test func aHostModeAgentRunsAsItsWorkDirsOwner() throws {
        let work = dir.child("owned")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        chown(work, Self.ownerUid, Self.ownerUid)
        let result = try dispatch(["--task", Self.attack + rootFile + " fake:write=out.txt:done"], cwd: work, env: ["DISPATCH_AGENT_USER": ""])
        let stderr = Self.stderr(result)
        #expect(result["status"] as? String == "completed", "\(result)")
        #expect(Self.uid(in: stderr) == Self.ownerUid, "\(stderr)")
        #expect(stderr.contains("sysctl refused"), "\(stderr)")
        #expect(stderr.contains("write \(rootFile) refused"), "\(stderr)")
        var info = stat()
        #expect(stat("\(work)/out.txt", &info) == 0 && info.st_uid == Self.ownerUid, "what the agent wrote is its owner's")
    }

    /// The run's home lies in the state dir, which may lie under a directory of root's (`/root/.local/state`): the
    /// work dir's owner still reaches it (and its work dir), through the way made for it.
    @Test func aHostModeAgentReachesItsHomeUnderAStateDirOfRoots() throws {
        let closed = dir.child("root-only")
        try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: true)
        chmod(closed, 0o700)
        let work = dir.child("owned-too")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        chown(work, Self.ownerUid, Self.ownerUid)
        var env = [
            "DISPATCH_STATE_DIR": "\(closed)/state", "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_ISOLATION": "bwrap",
            "DISPATCH_AGENT_USER": "",
        ]
        env["DISPATCH_KILL_GRACE_MS"] = "500"
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            [
                "run", "--tool", "codex", "--json", "--request-id", "home-reach", "--task",
                "fake:home-write=probe.txt:reached fake:write=w.txt:w fake:tmp-write=home-reach-tmp.txt:kept",
            ],
            environment: env,
            cwd: work
        )
        let result = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
        #expect(result["status"] as? String == "completed", "\(result)")
        #expect(LogFile.read("\(closed)/state/runs/home-reach/home/probe.txt") == "reached", "the agent wrote into its home")
        #expect(FileManager.default.fileExists(atPath: "\(work)/w.txt"))
        // Its temp dir is its run's too: nothing of it lands in the machine's /tmp.
        #expect(LogFile.read("\(closed)/state/runs/home-reach/home/tmp/home-reach-tmp.txt") == "kept")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/home-reach-tmp.txt"))
    }

    @Test func aRootOwnedWorkDirIsRefusedNamingTheFixAndRootIsOnlyAnExplicitOptOut() throws {
        let work = dir.child("root-owned-work")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let refused = try dispatch(["--task", Self.attack + rootFile], cwd: work, env: ["DISPATCH_AGENT_USER": ""])
        #expect(refused["status"] as? String == "failed")
        #expect((refused["error"] as? String)?.contains("DISPATCH_AGENT_USER") == true, "\(refused)")
        #expect(refused["attempts"] as? [Any] == nil || (refused["attempts"] as? [Any])?.isEmpty == true, "no agent started")
        // The opt-out runs it as root, and then the attack on the root-owned file succeeds: the check above can fail.
        let unsafe = try dispatch(["--task", Self.attack + rootFile], cwd: work, env: ["DISPATCH_AGENT_USER": "root"])
        #expect(Self.uid(in: Self.stderr(unsafe)) == 0)
        #expect(Self.stderr(unsafe).contains("write \(rootFile) ok"), "\(Self.stderr(unsafe))")
        // A named user runs it as that user.
        let named = try dispatch(["--task", "fake:whoami"], cwd: work, env: ["DISPATCH_AGENT_USER": "nobody"])
        #expect(Self.uid(in: Self.stderr(named)) == 65534, "\(named)")
    }

    /// A canary (the runner's own script) runs on a leased uid, also when the request's work dir is a root-owned 0700
    /// directory that uid cannot enter.
    @Test func aCanaryRunsOnALeasedUidWhateverItsWorkDir() throws {
        let closed = dir.child("closed-work")
        try FileManager.default.createDirectory(atPath: closed, withIntermediateDirectories: true)
        chmod(closed, 0o700)
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["canary", "escape"],
            environment: ["DISPATCH_STATE_DIR": state, "DISPATCH_ISOLATION": "bwrap", "DISPATCH_AGENT_USER": ""],
            cwd: closed
        )
        #expect(outcome.exitCode == 0, "\(outcome.stdout) \(outcome.stderr)")
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "canary", "--task", "hold", "--timeout", "2", "--json"],
            environment: ["DISPATCH_STATE_DIR": state, "DISPATCH_ISOLATION": "bwrap", "DISPATCH_AGENT_USER": ""],
            cwd: closed
        )
        let result = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stderr)")
        // The sleep canary ran (and timed out), rather than failing to enter its work dir.
        #expect((result["error"] as? String)?.contains("timed out after") == true, "\(result)")
    }

    @Test func doctorReportsWhoRunsAgentsInEachMode() throws {
        for (user, host) in [("", "workdir-owner"), ("root", "root-unsafe")] {
            let outcome = try CommandRunner.run(
                TestPaths.dispatchBinary,
                ["doctor"],
                environment: ["DISPATCH_STATE_DIR": state, "DISPATCH_ISOLATION": "bwrap", "DISPATCH_AGENT_USER": user]
            )
            let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
            #expect(report["agentUser"] as? String == (user.isEmpty ? "leased" : "root-unsafe"), "\(report)")
            #expect(report["agentUsers"] as? [String: String] == ["sandbox": "leased", "host": host], "\(report)")
            #expect(report["agentUids"] as? String == "61184-65519")
        }
    }

    @Test func anUnknownAgentUserOrUidRangeIsAUsageError() throws {
        let bad = [
            ("DISPATCH_AGENT_USER", "no-such-user-here"), ("DISPATCH_AGENT_UIDS", "9-3"), ("DISPATCH_AGENT_USER", "61200"),
            ("DISPATCH_MAX_RUN_DISK_BYTES", "lots"), ("DISPATCH_MAX_RUN_DISK_BYTES", "-1"),
        ]
        for (name, value) in bad {
            let result = try CommandRunner.run(
                TestPaths.dispatchBinary,
                ["run", "--tool", "codex", "--json", "--task", "x"],
                environment: ["DISPATCH_STATE_DIR": state, "DISPATCH_ISOLATION": "bwrap", name: value],
                cwd: dir.path
            )
            #expect(result.exitCode == 2, "\(name)=\(value): \(result.stdout) \(result.stderr)")
            #expect(result.stderr.contains(name), "\(result.stderr)")
        }
    }
}

/// The leases themselves: one live holder per uid, held by any process the lease file was given to.
@Suite(.enabled(if: geteuid() == 0, "needs root (uids without accounts)"))
struct AgentUidLeaseTests {
    let dir = TempDir("uid-leases")

    @Test func aUidIsNeverLeasedTwiceWhileAnyHolderLives() throws {
        let leases = AgentUidLeases(range: 60_990...60_991, directory: dir.child("leases"))
        let first = try leases.lease(for: "a")
        let second = try leases.lease(for: "b")
        #expect(first.uid != second.uid)
        #expect(throws: AgentProcessError.self) { try leases.lease(for: "c") }
        // A monitor holds it too: the runner letting go does not free it while the monitor lives.
        let monitor = try CommandRunner.start("/usr/bin/flock", ["-s", "-o", first.path, "/bin/sleep", "30"])
        Thread.sleep(forTimeInterval: 0.3)
        first.release()
        #expect(leases.isHeld(first.uid))
        #expect(throws: AgentProcessError.self) { try leases.lease(for: "d") }
        kill(monitor.pid, SIGKILL)
        _ = monitor.wait()
        #expect(!leases.isHeld(first.uid))
        #expect(try leases.lease(for: "e").uid == first.uid)
        withExtendedLifetime(second) {}
    }

    @Test func rangesParseOrNameWhatIsWrong() {
        #expect(AgentUidLeases.parseRange("61184-65519") == 61184...65519)
        #expect(AgentUidLeases.parseRange("70000") == 70000...70000)
        for bad in ["", "0-10", "10-9", "a-b", "1-2-3", "1-4294967295"] { #expect(AgentUidLeases.parseRange(bad) == nil, "\(bad)") }
    }
}
