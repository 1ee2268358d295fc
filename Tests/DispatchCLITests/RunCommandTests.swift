import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct RunCommandTests {
    let dir = TempDir("cli")
    var state: String { dir.child("state") }
    var env: [String: String] {
        [
            "DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_CLAUDE_BIN": TestPaths.fake("claude"),
            "DISPATCH_PI_BIN": TestPaths.fake("pi"), "DISPATCH_KILL_GRACE_MS": "1000", "DISPATCH_AGENT_ENV": "IS_SANDBOX", "IS_SANDBOX": "1",
        ]
    }

    func dispatch(_ arguments: [String]) throws -> CommandResult {
        try CommandRunner.run(TestPaths.dispatchBinary, arguments, environment: env, cwd: dir.path)
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func completedRunPrintsTheBareResultAndExitsZero() throws {
        let result = try dispatch(["run", "--tool", "codex", "--task", "fake:answer=hi", "--request-id", "ok-1", "--json"])
        #expect(result.exitCode == 0, "\(result.stderr)")
        let document = try json(result.stdout)
        #expect(document["status"] as? String == "completed")
        #expect(document["result"] as? String == "hi")
        #expect(FileManager.default.fileExists(atPath: "\(state)/inbox/ok-1.json"))
    }

    @Test func failedRunExitsOne() throws {
        let result = try dispatch(["run", "--tool", "codex", "--task", "fake:exit=4", "--json"])
        #expect(result.exitCode == 1)
        #expect(try json(result.stdout)["error"] as? String ?? "" != "")
    }

    @Test(arguments: [
        ["run", "--tool", "codex", "--task", "x", "--request-id", "../x"],
        ["run", "--tool", "codex", "--task", "x", "--request-id", "a/b"],
        ["run", "--tool", "codex", "--task", "x", "--request-id", ".."],
        ["run", "--tool", "codex", "--task", "x", "--request-id", String(repeating: "a", count: 129)],
        ["run", "--tool", "gpt", "--task", "x"],
        ["run", "--tool", "codex", "--task", ""],
        ["run", "--tool", "codex", "--task", "x", "--timeout", "0"],
        ["run", "--tool", "codex", "--task", "x", "--mode", "vm"],
        ["run", "--tool", "codex"],
        ["run", "--tool", "codex", "--task", "x", "--bogus-flag"],
    ])
    func invalidInputExitsTwoAndLeavesNothing(arguments: [String]) throws {
        let result = try dispatch(arguments)
        #expect(result.exitCode == 2, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("dispatch: "), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: state), "a rejected request created state")
    }

    @Test func anUnusableKubeconfigFailsK8sRequestsSayingWhyAndServeRefusesToStart() throws {
        let kubeconfig = dir.child("kubeconfig.yaml")
        try """
        current-context: c
        clusters: [{name: k, cluster: {server: "https://api.example.test", insecure-skip-tls-verify: true}}]
        contexts: [{name: c, context: {cluster: k}}]
        """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
        let environment = env.merging(["KUBECONFIG": kubeconfig]) { $1 }
        let k8s = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "x", "--mode", "sandbox", "--backend", "k8s", "--json"],
            environment: environment,
            cwd: dir.path
        )
        #expect(k8s.exitCode == 1)
        let error = try json(k8s.stdout)["error"] as? String ?? ""
        #expect(error.contains("sandbox backend k8s is unavailable") && error.contains("insecure-skip-tls-verify"), "\(error)")

        let local = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:answer=fine", "--json"],
            environment: environment,
            cwd: dir.path
        )
        #expect(local.exitCode == 0, "a broken k8s configuration does not stop local work: \(local.stderr)")

        let serve = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--host", "127.0.0.1", "--port", "0", "--state-dir", dir.child("serve-state")],
            environment: environment,
            cwd: dir.path
        )
        #expect(serve.exitCode == 2)
        #expect(serve.stderr.contains("cannot use the k8s backend") && serve.stderr.contains("insecure-skip-tls-verify"), "\(serve.stderr)")
    }

    @Test func malformedRequestFileExitsTwo() throws {
        let file = dir.child("bad.json")
        try "{not json".write(toFile: file, atomically: true, encoding: .utf8)
        let result = try dispatch(["run", "--request", file])
        #expect(result.exitCode == 2)
        try #"{"requestId":"x","task":"t","tool":"codex","timeout":"soon"}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let typed = try dispatch(["run", "--request", file])
        #expect(typed.exitCode == 2)
        #expect(typed.stderr.contains("timeout"))
        #expect(!FileManager.default.fileExists(atPath: state))
    }

    @Test func fiftyConcurrentRunsOfOneIdStartOneAgent() throws {
        let count = dir.child("count")
        let arguments = ["run", "--tool", "codex", "--task", "fake:sleep=1 fake:count=\(count) fake:answer=once", "--request-id", "same", "--json"]
        let runs = try (0..<50).map { _ in try CommandRunner.start(TestPaths.dispatchBinary, arguments, environment: env, cwd: dir.path) }
        let results = runs.map { $0.wait() }
        #expect(results.allSatisfy { $0.exitCode == 0 }, "\(results.map(\.exitCode)) \(results.first { $0.exitCode != 0 }?.stderr ?? "")")
        #expect(Set(results.map(\.stdout)).count == 1, "all 50 print the same terminal result")
        #expect(try json(results[0].stdout)["result"] as? String == "once")
        #expect(LogFile.lines(count) == 1, "exactly one agent started")
    }

    @Test func killNineMidFlightEndsFailedNeverRunningForever() async throws {
        let run = try CommandRunner.start(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--task", "fake:hang fake:setsid-child=100", "--request-id", "k9"],
            environment: env,
            cwd: dir.path
        )
        #expect(await eventually { survivors(of: "k9").count >= 2 })
        kill(run.pid, SIGKILL)
        _ = run.wait()
        let status = try dispatch(["status", "k9"])
        #expect(status.exitCode == 0)
        let document = try json(status.stdout)
        #expect(document["status"] as? String == "failed")
        #expect((document["error"] as? String)?.contains("runner exited while running") == true)
        #expect(survivors(of: "k9").isEmpty, "the abandoned agent and its escaped child are killed")
        let again = try dispatch(["run", "--tool", "codex", "--task", "x", "--request-id", "k9", "--json"])
        #expect(again.exitCode == 1)
        #expect(try json(again.stdout)["status"] as? String == "failed")
    }

    @Test func ctrlCCancelsAndStillWritesCancelled() async throws {
        let run = try CommandRunner.start(
            TestPaths.dispatchBinary,
            ["run", "--tool", "claude", "--task", "fake:hang", "--request-id", "int", "--json"],
            environment: env,
            cwd: dir.path
        )
        #expect(await eventually { !survivors(of: "int").isEmpty })
        kill(run.pid, SIGINT)
        let result = run.wait()
        #expect(result.exitCode == 130, "\(result.stderr)")
        #expect(try json(result.stdout)["status"] as? String == "cancelled")
        let inbox = try json(String(contentsOfFile: "\(state)/inbox/int.json", encoding: .utf8))
        #expect(inbox["status"] as? String == "cancelled")
        #expect(survivors(of: "int").isEmpty)
    }

    @Test func orphanStderrCanaryPasses() throws {
        let result = try dispatch(["canary", "orphan-stderr"])
        #expect(result.exitCode == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(try json(result.stdout)["ok"] as? Bool == true)
    }

    @Test func listAndLogsReadTheLocalState() throws {
        _ = try dispatch(["run", "--tool", "codex", "--task", "fake:answer=listed", "--request-id", "l-1"])
        let list = try dispatch(["list", "--json"])
        #expect(list.stdout.contains("\"requestId\":\"l-1\""))
        let logs = try dispatch(["logs", "l-1"])
        #expect(logs.stdout.contains("listed"))
        let unknown = try dispatch(["status", "nope"])
        #expect(unknown.exitCode == 1)
    }
}

extension LogFile {
    static func lines(_ path: String) -> Int { read(path).split(separator: "\n").count }
}
