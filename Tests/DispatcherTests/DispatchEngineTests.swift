import AgentProcess
import DispatchCore
import DispatchStore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Testing

@Suite(.serialized) struct DispatchEngineTests {
    @Test(arguments: StoreKind.allCases)
    func codexCompletesAndTheInboxHoldsTheResult(_ store: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(store) else { return }
        let request = fixture.request(.codex, "say hi fake:answer=hello")
        let result = try await fixture.run(request)
        #expect(result.status == .completed, "\(result.error ?? "")")
        #expect(result.result == "hello")
        #expect(result.attempts.count == 1)
        #expect(result.attempts[0].exitCode == 0)
        #expect(result.completedAt?.hasSuffix("Z") == true)
        #expect(try fixture.inbox(request.requestId) == result)
    }

    @Test func theAgentSeesItsRequestIdAndTheRealArgvShape() async throws {
        let logDir = TempDir("argv")
        let argvLog = logDir.child("argv.jsonl")
        let fixture = try EngineFixture(environment: ["FAKE_AGENT_ARGV_LOG": argvLog])
        var request = fixture.request(.claude, "look around")
        request.model = "sonnet"
        let result = try await fixture.run(request)
        #expect(result.status == .completed, "\(result.error ?? "")")
        let line = try #require(LogFile.read(argvLog).split(separator: "\n").first)
        let logged = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect(logged["requestId"] as? String == request.requestId)
        #expect((logged["argv"] as? [String])?.prefix(3) == ["-p", "look around", "--dangerously-skip-permissions"])
    }

    /// codex as 0.147 behaves (the fake refuses `--full-auto` as the real one does): the command line it accepts,
    /// with the sandbox flag chosen by isolation; a recovered stream error is no failure; a failed turn's reason is in
    /// the error sentence although stderr says nothing useful.
    @Test func codexIsJudgedByItsFinalEventAndGetsACommandLineItAccepts() async throws {
        let logDir = TempDir("codex-argv")
        let argvLog = logDir.child("argv.jsonl")
        let fixture = try EngineFixture(environment: ["FAKE_AGENT_ARGV_LOG": argvLog])
        let recovered = try await fixture.run(fixture.request(.codex, "fake:recovered-error fake:answer=recovered"))
        #expect(recovered.status == .completed && recovered.result == "recovered", "\(recovered.error ?? "")")
        let line = try #require(LogFile.read(argvLog).split(separator: "\n").first)
        let argv = (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["argv"] as? [String] ?? []
        let isolated = EngineFixture.isolation.mode == .bwrap
        #expect(!argv.contains("--full-auto"))
        #expect(argv.contains("--dangerously-bypass-approvals-and-sandbox") == isolated && argv.contains("--sandbox") == !isolated, "\(argv)")
        let failed = try await fixture.run(fixture.request(.codex, "fake:turn-failed=stream%20disconnected%20before%20completion"))
        #expect(failed.status == .failed)
        #expect(
            failed.error?.contains("exit 1") == true && failed.error?.contains("stream disconnected before completion") == true,
            "\(failed.error ?? "")"
        )
        #expect(failed.error?.contains("Reading additional input") == false, "\(failed.error ?? "")")
    }

    @Test func aTaskAboveTheArgvLimitReachesTheAgentIntact() async throws {
        let fixture = try EngineFixture()
        for tool in [AgentTool.codex, .claude, .pi] {
            let task = String(repeating: "long task text ", count: 12_000)  // 180,000 bytes > 128 KiB
            let result = try await fixture.run(fixture.request(tool, task))
            #expect(result.status == .completed, "\(tool): \(result.error ?? "")")
            #expect(result.result == "fake \(tool.rawValue) done (task \(task.utf8.count) bytes)")
        }
    }

    @Test func claudeThatHangsAfterItsResultIsCompletedWithinTheGrace() async throws {
        let fixture = try EngineFixture(completionGraceMs: 1000)
        let request = fixture.request(.claude, "fake:answer=all%20done fake:final-then-hang")
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await fixture.run(request)
        #expect(result.status == .completed, "\(result.error ?? "")")
        #expect(result.result == "all done")
        #expect(clock.now - start < .seconds(1) + .seconds(1) + .seconds(2), "grace 1 s + 1 s, plus python start-up slack")
        #expect(survivors(of: request.requestId).isEmpty)
    }

    @Test(arguments: StoreKind.allCases)
    func hangingPiAttemptsShareOneBudget(_ store: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(store, killGraceMs: 1000, environment: ["FAKE_AGENT_HANG_MODELS": "a,b,c"]) else { return }
        var request = fixture.request(.pi, "think forever", timeout: 3)
        request.model = "a"
        request.fallbackModels = ["b", "c"]
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await fixture.run(request)
        let elapsed = clock.now - start
        #expect(result.status == .failed)
        #expect(result.error?.contains("timed out after") == true, "\(result.error ?? "")")
        #expect(result.error?.contains("budget 3000ms") == true)
        #expect(elapsed < .seconds(3) + .seconds(1) + .seconds(1), "budget + grace + 1 s; took \(elapsed)")
        #expect(result.attempts.first?.timedOut == true)
        #expect(survivors(of: request.requestId).isEmpty)
    }

    @Test(arguments: StoreKind.allCases)
    func fallbackModelsAreTriedInOrder(_ store: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(store, environment: ["FAKE_AGENT_FAIL_MODELS": "bad1,bad2"]) else { return }
        var request = fixture.request(.codex, "fake:answer=ok")
        request.model = "bad1"
        request.fallbackModels = ["bad2", "good"]
        let result = try await fixture.run(request)
        #expect(result.status == .completed)
        #expect(result.attempts.map(\.model) == ["bad1", "bad2", "good"])
        #expect(result.attempts.map(\.exitCode) == [3, 3, 0])
        #expect(result.attempts[0].error?.contains("exit 3: fake codex: model bad1 is unavailable") == true)
    }

    @Test(arguments: StoreKind.allCases)
    func nonZeroExitSaysExitCodeAndStderrTail(_ store: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(store) else { return }
        let result = try await fixture.run(fixture.request(.codex, "fake:stderr=boom%20happened fake:exit=9"))
        #expect(result.status == .failed)
        #expect(result.error?.contains("exit 9: boom happened") == true, "\(result.error ?? "")")
    }

    @Test func crashIsReportedBySignalName() async throws {
        let fixture = try EngineFixture()
        let result = try await fixture.run(fixture.request(.codex, "fake:crash"))
        #expect(result.status == .failed)
        #expect(result.attempts.first?.signal == Int(SIGSEGV))
        #expect(result.error?.contains("SIGSEGV") == true, "\(result.error ?? "")")
    }

    @Test func emptyPiOutputIsAFailure() async throws {
        let fixture = try EngineFixture()
        let result = try await fixture.run(fixture.request(.pi, "fake:empty"))
        #expect(result.status == .failed)
        #expect(result.error?.contains("no final answer") == true)
    }

    @Test func missingBinaryIsAClearFailure() async throws {
        let fixture = try EngineFixture()
        var configuration = fixture.configuration
        configuration.codexBin = "no-such-codex-binary"
        let engine = DispatchEngine.standard(
            configuration: configuration,
            store: fixture.engine.store,
            logger: .init(label: "t"),
            environment: ProcessInfo.processInfo.environment
        )
        let result = try await engine.runOnce(fixture.request(.codex, "x"), token: CancelToken()).result
        #expect(result.status == .failed)
        #expect(result.error?.contains("\"no-such-codex-binary\" was not found on PATH (set DISPATCH_CODEX_BIN") == true)
    }

    @Test func bigOutputIsCappedInTheResultButKeptInTheLogFile() async throws {
        let fixture = try EngineFixture()
        let result = try await fixture.run(fixture.request(.codex, "fake:big-output=1200000 fake:stderr=tail"))
        #expect(result.status == .completed)
        let logs = try #require(result.logs)
        #expect(logs.stdout.utf8.count == LogInfo.tailBytes)
        let size = try FileManager.default.attributesOfItem(atPath: logs.stdoutPath)[.size] as! Int
        #expect(size > 1_200_000)
    }

    @Test(arguments: StoreKind.allCases)
    func cancellationWritesCancelledAndKillsTheAgent(_ store: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(store) else { return }
        let request = fixture.request(.codex, "fake:hang fake:setsid-child=100")
        let token = CancelToken()
        let engine = fixture.engine
        let task = Task { try await engine.runOnce(request, token: token).result }
        #expect(await eventually { (try? fixture.inbox(request.requestId).logs) != nil && !survivors(of: request.requestId).isEmpty })
        token.cancel(reason: "cancelled by test")
        task.cancel()
        let result = try await task.value
        #expect(result.status == .cancelled)
        #expect(result.error == "cancelled by test")
        #expect(try fixture.inbox(request.requestId).status == .cancelled)
        #expect(survivors(of: request.requestId).isEmpty)
    }

    @Test(arguments: StoreKind.allCases)
    func aDuplicateStartsNothingAndTerminalIsFinal(_ store: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(store) else { return }
        let count = fixture.dir.child("count")
        let request = fixture.request(.codex, "fake:count=\(count)")
        let first = try await fixture.engine.runOnce(request, token: CancelToken())
        let second = try await fixture.engine.runOnce(request, token: CancelToken())
        #expect(!first.duplicate && second.duplicate)
        #expect(first.result == second.result)
        #expect(LogFile.read(count).split(separator: "\n").count == 1)
        var late = first.result
        late.status = .failed
        late.error = "late write"
        let outcome = try await fixture.engine.store.update(late)
        guard case .alreadyTerminal(let stored) = outcome else {
            Issue.record("terminal result was replaced")
            return
        }
        #expect(stored.result == first.result)
        #expect(try fixture.inbox(request.requestId) == first.result)
    }

    @Test func missingWorkingDirectoryFails() async throws {
        let fixture = try EngineFixture()
        var request = fixture.request(.codex, "x")
        request.cwd = fixture.dir.child("nope")
        let result = try await fixture.run(request)
        #expect(result.status == .failed)
        #expect(result.error?.contains("does not exist") == true)
    }
}

@Suite struct CallbackTokensTests {
    @Test func aTokenOpensOnlyItsOwnRequestAndRevealsNothingOfTheAdminToken() {
        let admin = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        let tokens = CallbackTokens(adminToken: admin)
        let token = tokens.token(for: "req-1")
        #expect(tokens.verify(token, requestId: "req-1"))
        #expect(!tokens.verify(token, requestId: "req-2"))
        #expect(!tokens.verify(token + "0", requestId: "req-1"))
        #expect(!token.contains(admin) && !admin.contains(token.dropFirst(4)))
        #expect(CallbackTokens(adminToken: admin).token(for: "req-1") == token, "every replica with the admin token derives the same token")
        #expect(!CallbackTokens(adminToken: admin + "x").verify(token, requestId: "req-1"), "another admin token, another key")
    }
}

@Suite struct RealCLIDemandsTests {
    @Test func claudeAsRootWithoutIsSandboxFailsBeforeSpawningSayingWhy() async throws {
        guard geteuid() == 0 else { return }  // the refusal is root's only
        let argvLog = TempDir("claude-root").child("argv.jsonl")
        let fixture = try EngineFixture(environment: ["IS_SANDBOX": "", "FAKE_AGENT_ARGV_LOG": argvLog])
        let result = try await fixture.run(fixture.request(.claude, "fake:answer=x"))
        #expect(result.status == .failed)
        #expect(result.error?.contains("IS_SANDBOX=1") == true, "\(result.error ?? "")")
        #expect(result.attempts.isEmpty, "nothing was spawned")
        #expect(!FileManager.default.fileExists(atPath: argvLog))
    }

    @Test func codexGetsSkipGitRepoCheckOnlyOutsideAGitRepository() async throws {
        let logs = TempDir("codex-git")
        let argvLog = logs.child("argv.jsonl")
        let fixture = try EngineFixture(environment: ["FAKE_AGENT_ARGV_LOG": argvLog])
        let plain = try await fixture.run(fixture.request(.codex, "fake:answer=plain"))
        #expect(plain.status == .completed, "the fake codex refuses a plain directory without the flag: \(plain.error ?? "")")
        let repo = logs.child("repo")
        _ = try GitFixture.makeRepo(at: repo, files: ["a.txt": "a\n"])
        try FileManager.default.createDirectory(atPath: "\(repo)/sub", withIntermediateDirectories: true)
        var inRepo = fixture.request(.codex, "fake:answer=in-repo")
        inRepo.cwd = "\(repo)/sub"
        #expect(try await fixture.run(inRepo).status == .completed)
        let argvs = LogFile.read(argvLog).split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["argv"] as? [String]
        }
        #expect(argvs.count == 2)
        #expect(argvs.first?.contains("--skip-git-repo-check") == true)
        #expect(argvs.last?.contains("--skip-git-repo-check") == false, "inside a repository the check stays on")
    }
}

@Suite struct OrphanCanaryCheckTests {
    @Test func theProofFailsWhenTheOrphanLetGoBeforeTheResult() async {
        let written = Date()
        let before = Int64((written.timeIntervalSince1970 - 0.5) * 1000)
        let after = Int64((written.timeIntervalSince1970 + 1.5) * 1000)
        let waited = await CanaryChecks.heldWhileWritten(written, delaySeconds: 0) {
            "orphan-stderr canary: orphan let go of stderr at \(before) (delay over)\n"
        }
        #expect(!waited.ok, "\(waited.detail)")
        let prompt = await CanaryChecks.heldWhileWritten(written, delaySeconds: 0) {
            "orphan-stderr canary: orphan let go of stderr at \(after) (ended)\n"
        }
        #expect(prompt.ok, "\(prompt.detail)")
        let silent = await CanaryChecks.heldWhileWritten(written, delaySeconds: 0) { "" }
        #expect(!silent.ok, "no record is no proof")
    }
}

/// A stand-in for a backend whose runs outlive their runner (as k8s Jobs do).
struct OutlivingBackend: ExecutionBackend {
    var followsAfterRestart: Bool { true }
    func run(_ context: BackendContext) async -> BackendOutcome { .settledElsewhere }
}

@Suite struct RecordedBackendTests {
    @Test func aRequestStaysOnTheBackendRecordedAtAdmission() async throws {
        let fixture = try EngineFixture()
        var request = fixture.request(.codex, "x")
        request.executionMode = .sandbox
        let admitted = try await fixture.engine.admit(request, status: .running, owner: .current(kind: .serve))
        guard case .inserted(let local) = admitted else {
            Issue.record("not inserted")
            return
        }
        #expect(local.result.sandboxBackend == .local)
        // The operator switches the default to k8s and restarts: the local run is not taken for a Job to follow.
        var configuration = fixture.configuration
        configuration.defaultBackend = .k8s
        let restarted = DispatchEngine.standard(
            configuration: configuration,
            store: fixture.engine.store,
            logger: .init(label: "t"),
            environment: [:],
            k8s: OutlivingBackend()
        )
        #expect(!restarted.canReattach(local))
        var followed = local
        followed.result.sandboxBackend = .k8s
        #expect(restarted.canReattach(followed))
    }
}
