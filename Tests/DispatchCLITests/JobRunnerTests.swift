import AgentProcess
import DispatchCore
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct JobRunnerTests {
    let dir = TempDir("job-runner")

    /// Starts the callback sink; returns its URL, the file it records to, and the process.
    func sink(failFirst: Int = 0) async throws -> (url: String, out: String, process: RunningCommand) {
        let portFile = dir.child("sink-\(UUID().uuidString.prefix(4)).port"), out = dir.child("callbacks-\(UUID().uuidString.prefix(4)).jsonl")
        let process = try CommandRunner.start(
            "/usr/bin/env", ["python3", "\(TestPaths.packageRoot)/canaries/callback_sink.py", "--port-file", portFile, "--out", out,
                             "--fail-first", "\(failFirst)"])
        #expect(await eventually { FileManager.default.fileExists(atPath: portFile) })
        let port = try String(contentsOfFile: portFile, encoding: .utf8)
        return ("http://127.0.0.1:\(port)/internal/agent-result", out, process)
    }

    func environment(repo: String, base: String, task: String, callback: String, timeout: Int = 60) -> [String: String] {
        [
            "REQUEST_ID": "job-\(UUID().uuidString.prefix(8))", "WORKFLOW_ID": "wf", "STORY_ID": "st", "BASE_SHA": base, "REPO_URL": repo,
            "REPO_BRANCH": "main", "AGENT_PROGRAM": "codex", "AGENT_MODEL": "", "TIMEOUT_SECONDS": "\(timeout)",
            "TASK_PROMPT_B64": Data(task.utf8).base64EncodedString(), "VERIFICATION_COMMANDS_B64": "",
            "RESULT_CALLBACK_URL": callback, "RESULT_CALLBACK_TOKEN": "cb-token", "JOB_NAME": "dispatch-job-x", "JOB_NAMESPACE": "agents",
            "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "1000",
        ]
    }

    static func report(from stdout: String) throws -> SandboxExecutionResult {
        let lines = stdout.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "---RESULT_START---"))
        let end = try #require(lines.firstIndex(of: "---RESULT_END---"))
        return try JSONDecoder().decode(SandboxExecutionResult.self, from: Data(lines[(start + 1)..<end].joined(separator: "\n").utf8))
    }

    func callbacks(_ path: String) throws -> [[String: Any]] {
        LogFile.read(path).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func clonesAtBaseShaRunsAndReportsLikeALocalSandbox() async throws {
        let repo = dir.child("origin")
        let base = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n", "b.txt": "bravo\n"])
        try GitFixture.write(["a.txt": "later\n"], in: repo)
        try GitFixture.git(["commit", "-qam", "later"], in: repo)
        let sink = try await sink(failFirst: 1)
        defer { sink.process.process.terminate() }
        let task = "fake:write=new.txt:x fake:rm=b.txt fake:answer=done"
        let env = environment(repo: repo, base: base, task: task, callback: sink.url)
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws")], environment: env)
        #expect(run.exitCode == 0, "\(run.stderr)")
        let report = try Self.report(from: run.stdout)
        #expect(report.state == .completed, "\(report.error ?? "")")
        #expect(report.output == "done")
        #expect(report.job?.name == "dispatch-job-x")
        #expect(report.artifacts?.touchedFiles == ["b.txt", "new.txt"])
        #expect(try String(contentsOfFile: "\(dir.child("ws"))/source/.git/HEAD", encoding: .utf8).contains("refs/heads/main"))

        // The same request as a local sandbox of the origin repo gives the same patch.
        let fixture = try EngineFixture()
        var local = fixture.request(.codex, task)
        local.executionMode = .sandbox
        local.cwd = repo
        local.baseSha = base
        let localResult = try await fixture.run(local)
        #expect(localResult.artifacts?.patch == report.artifacts?.patch)
        #expect(localResult.artifacts?.touchedFiles == report.artifacts?.touchedFiles)

        let posts = try callbacks(sink.out)
        #expect(posts.allSatisfy { $0["auth"] as? String == "Bearer cb-token" })
        let states = posts.map { (($0["body"] as? [String: Any])?["state"] as? String ?? "?", $0["status"] as? Int ?? 0) }
        #expect(states.first?.0 == "running")
        #expect(states.last.map { $0.0 == "completed" && $0.1 == 200 } == true, "\(states)")
    }

    @Test func missingEnvironmentIsAFailedResultNamingIt() async throws {
        let sink = try await sink()
        defer { sink.process.process.terminate() }
        var env = environment(repo: "", base: "", task: "x", callback: sink.url)
        env["REPO_URL"] = ""
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws2")], environment: env)
        #expect(run.exitCode == 1)
        let report = try Self.report(from: run.stdout)
        #expect(report.state == .failed)
        #expect(report.error == "missing environment variable REPO_URL")
        #expect(try callbacks(sink.out).last.flatMap { ($0["body"] as? [String: Any])?["state"] as? String } == "failed")
    }

    @Test func anUnreachableCallbackDelaysNeitherTheAgentNorTheExit() async throws {
        let repo = dir.child("origin4")
        let base = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        // Nothing listens on port 9: every POST is refused. Before attempts were bounded, each took the client's
        // whole request timeout (10 s), so the agent started 30 s late and the runner exited a minute later.
        let env = environment(repo: repo, base: base, task: "fake:answer=on-time", callback: "http://127.0.0.1:9/internal/agent-result")
        let clock = ContinuousClock()
        let began = clock.now
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws4")], environment: env)
        let elapsed = clock.now - began
        #expect(run.exitCode == 0, "\(run.stderr)")
        #expect(try Self.report(from: run.stdout).output == "on-time")
        #expect(run.stderr.components(separatedBy: "callback failed").count - 1 >= 5, "the final report was retried")
        #expect(elapsed < .seconds(15), "bounded retries, not request timeouts: \(elapsed)")
    }

    @Test func sigtermBecomesACancelledResultAndExit143() async throws {
        let repo = dir.child("origin3")
        let base = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let sink = try await sink()
        defer { sink.process.process.terminate() }
        let env = environment(repo: repo, base: base, task: "fake:hang", callback: sink.url)
        let run = try CommandRunner.start(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws3")], environment: env)
        #expect(await eventually { !survivors(of: env["REQUEST_ID"]!).isEmpty })
        kill(run.pid, SIGTERM)
        let result = run.wait()
        #expect(result.exitCode == 143, "\(result.stderr)")
        let report = try Self.report(from: result.stdout)
        #expect(report.state == .cancelled)
        #expect(report.error?.contains("SIGTERM") == true)
        #expect(survivors(of: env["REQUEST_ID"]!).isEmpty)
        let last = try callbacks(sink.out).last
        #expect((last?["body"] as? [String: Any])?["state"] as? String == "cancelled", "the cancelled report is POSTed too, after SIGTERM")
    }
}
