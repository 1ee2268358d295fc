import AgentProcess
import DispatchCore
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct JobRunnerTests {
    let dir = TempDir("job-runner")

    /// Starts the callback sink; returns its URL, the file it records to, and the process.
    func sink(failFirst: Int = 0) async throws -> (url: String, out: String, process: RunningCommand) {
        let portFile = dir.child("sink-\(UUID().uuidString.prefix(4)).port")
        let out = dir.child("callbacks-\(UUID().uuidString.prefix(4)).jsonl")
        let process = try CommandRunner.start(
            "/usr/bin/env",
            [
                "python3", "\(TestPaths.packageRoot)/canaries/callback_sink.py", "--port-file", portFile, "--out", out,
                "--fail-first", "\(failFirst)",
            ]
        )
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
        defer { sink.process.terminate() }
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
        defer { sink.process.terminate() }
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
        defer { sink.process.terminate() }
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

    /// A bare copy of a fresh repo served by `git http-backend` behind basic auth; returns the URL and the server.
    func privateRepo(user: String, password: String) async throws -> (url: String, base: String, server: RunningCommand) {
        let work = dir.child("private-src-\(UUID().uuidString.prefix(4))")
        let base = try GitFixture.makeRepo(at: work, files: ["a.txt": "alpha\n"])
        let root = dir.child("git-root-\(UUID().uuidString.prefix(4))")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try GitFixture.git(["clone", "-q", "--bare", work, "\(root)/app.git"], in: dir.path)
        let portFile = dir.child("git-\(UUID().uuidString.prefix(4)).port")
        let server = try CommandRunner.start(
            "/usr/bin/env",
            [
                "python3", "\(TestPaths.packageRoot)/canaries/git_auth_server.py", "--root", root, "--user", user,
                "--password", password, "--port-file", portFile,
            ]
        )
        #expect(await eventually { FileManager.default.fileExists(atPath: portFile) })
        let port = try String(contentsOfFile: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return ("http://127.0.0.1:\(port)/app.git", base, server)
    }

    @Test func aPrivateRepoIsClonedWithTheMountedGitCredentialsAndNeverWithoutThem() async throws {
        let secret = "S3cret-\(UUID().uuidString.prefix(6))"
        let repo = try await privateRepo(user: "bot", password: secret)
        defer { repo.server.terminate() }
        let credentials = dir.child("git-credentials")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        try "bot\n".write(toFile: "\(credentials)/username", atomically: true, encoding: .utf8)
        try "\(secret)\n".write(toFile: "\(credentials)/password", atomically: true, encoding: .utf8)

        var env = environment(repo: repo.url, base: repo.base, task: "fake:write=p.txt:x fake:answer=private-ok", callback: "")
        env["GIT_CREDENTIALS_DIR"] = credentials
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws-private")], environment: env)
        let report = try Self.report(from: run.stdout)
        #expect(report.state == .completed, "\(report.error ?? "") \(run.stderr)")
        #expect(report.output == "private-ok")
        #expect(!run.stdout.contains(secret) && !run.stderr.contains(secret), "the password appears in no output")

        env.removeValue(forKey: "GIT_CREDENTIALS_DIR")
        let refused = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws-anon")], environment: env)
        #expect(refused.exitCode == 1)
        let failed = try Self.report(from: refused.stdout)
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("checkout failed: cannot clone") == true, "\(failed.error ?? "")")

        try "wrong\n".write(toFile: "\(credentials)/password", atomically: true, encoding: .utf8)
        env["GIT_CREDENTIALS_DIR"] = credentials
        let wrong = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws-wrong")], environment: env)
        #expect(try Self.report(from: wrong.stdout).state == .failed, "a refused password fails the clone instead of looping")
    }

    @Test func theTaskAndCommandsComeFromMountedFilesAndCredentialURLsAreRefused() async throws {
        let repo = dir.child("origin-files")
        let base = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let mount = dir.child("request-mount")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let task = "fake:answer=from-the-file " + String(repeating: "y", count: 200 * 1024)
        try task.write(toFile: "\(mount)/task", atomically: true, encoding: .utf8)
        try #"["test -f a.txt"]"#.write(toFile: "\(mount)/verification-commands", atomically: true, encoding: .utf8)
        var env = environment(repo: repo, base: base, task: "ignored", callback: "")
        env.removeValue(forKey: "TASK_PROMPT_B64")
        env["TASK_PROMPT_FILE"] = "\(mount)/task"
        env["VERIFICATION_COMMANDS_FILE"] = "\(mount)/verification-commands"
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws-files")], environment: env)
        let report = try Self.report(from: run.stdout)
        #expect(report.state == .completed, "\(report.error ?? "")")
        #expect(report.output == "from-the-file")
        #expect(report.artifacts?.verification?.commands == ["test -f a.txt"])

        env["REPO_URL"] = "https://bot:S3cret@git.example.invalid/app.git"
        let refused = try CommandRunner.run(TestPaths.dispatchBinary, ["job-runner", "--workspace", dir.child("ws-cred")], environment: env)
        #expect(refused.exitCode == 1)
        #expect(!refused.stdout.contains("S3cret") && !refused.stderr.contains("S3cret"))
        #expect(try Self.report(from: refused.stdout).error?.contains("REPO_URL carries credentials") == true)
    }
}
