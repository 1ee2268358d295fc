import AgentProcess
import DispatchCore
import DispatchTestSupport
import Foundation
import Testing

/// Each run's own `HOME` (CONTRACT §7): copies of the CLIs' credential and config files from the agent home, never
/// the operator's transcripts; refreshed credentials written back; a run's transcript stays with the run; and no run
/// sees another's home.
@Suite(.serialized) struct AgentHomeTests {
    let dir = TempDir("agent-home")

    /// An agent home with a codex login, a Claude login and an earlier run's transcript, all an hour old.
    func operatorHome() throws -> String {
        let home = dir.child("operator-home")
        let files = [
            ".codex/auth.json": #"{"tokens":"old"}"#, ".claude/.credentials.json": "claude-old", ".codex/sessions/old.jsonl": "OTHER TRANSCRIPT",
        ]
        for (path, text) in files {
            try FileManager.default.createDirectory(
                atPath: "\(home)/\((path as NSString).deletingLastPathComponent)",
                withIntermediateDirectories: true
            )
            try text.write(toFile: "\(home)/\(path)", atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: "\(home)/\(path)")
        }
        return home
    }

    func sandboxRequest(_ fixture: EngineFixture, _ task: String, repo: String) -> DispatchRequest {
        var request = fixture.request(.codex, task)
        request.executionMode = .sandbox
        request.cwd = repo
        return request
    }

    @Test func aRunGetsCopiesOfItsToolsLoginAndARefreshedOneGoesBack() async throws {
        let home = try operatorHome()
        let fixture = try EngineFixture(environment: ["HOME": home], dir: TempDir("agent-home-run"))
        let repo = fixture.dir.child("repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let auth = "\(home)/.codex/auth.json"
        let task = [
            "fake:home-read=.codex/auth.json", "fake:home-read=.codex/sessions/old.jsonl", "fake:home-read=.claude/.credentials.json",
            #"fake:home-write=.codex/auth.json:{"tokens":"new"}"#, "fake:home-write=.codex/sessions/run.jsonl:transcript",
        ].joined(separator: " ")
        let result = try await fixture.run(sandboxRequest(fixture, task, repo: repo))
        #expect(result.status == .completed, "\(result.error ?? "")")
        let stderr = result.logs?.stderr ?? ""
        #expect(stderr.contains(#"home .codex/auth.json: {"tokens":"old"}"#), "the login was copied in: \(stderr)")
        #expect(stderr.contains("home .codex/sessions/old.jsonl: <missing>"), "no earlier transcript: \(stderr)")
        #expect(stderr.contains("home .claude/.credentials.json: <missing>"), "no other tool's login: \(stderr)")
        #expect(try String(contentsOfFile: auth, encoding: .utf8) == #"{"tokens":"new"}"#, "the refreshed login went back")
        let mode = (try FileManager.default.attributesOfItem(atPath: auth)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o600)
        #expect(!FileManager.default.fileExists(atPath: "\(home)/.codex/sessions/run.jsonl"), "the transcript stays with the run")
        let sandbox = try #require(result.localSandbox)
        #expect(FileManager.default.fileExists(atPath: "\(sandbox.path)/home/.codex/sessions/run.jsonl"))

        // What is not a refreshed login never goes back: a key the login never had, or a link to a secret.
        let secret = fixture.dir.child("secret")
        try #"{"tokens":"SECRET"}"#.write(toFile: secret, atomically: true, encoding: .utf8)
        for hostile in [#"fake:home-write=.codex/auth.json:{"tokens":"x","mcpServers":{}}"#, "fake:home-link=.codex/auth.json:\(secret)"] {
            let attacked = try await fixture.run(sandboxRequest(fixture, hostile, repo: repo))
            #expect(attacked.status == .completed, "\(attacked.error ?? "")")
            #expect(try String(contentsOfFile: auth, encoding: .utf8) == #"{"tokens":"new"}"#, "\(hostile) was written back")
        }

        var host = fixture.request(.codex, "fake:home-write=.codex/sessions/host.jsonl:x")
        host.cwd = repo
        let hosted = try await fixture.run(host)
        #expect(hosted.status == .completed, "\(hosted.error ?? "")")
        #expect(FileManager.default.fileExists(atPath: "\(fixture.configuration.stateDir)/runs/\(host.requestId)/home/.codex/sessions/host.jsonl"))
        #expect(!FileManager.default.fileExists(atPath: "\(home)/.codex/sessions/host.jsonl"), "host mode has a home of its own too")
    }

    @Test(.enabled(if: EngineFixture.isolation.mode == .bwrap)) func twoRunsAtOnceCannotSeeEachOthersHome() async throws {
        let home = try operatorHome()
        let fixture = try EngineFixture(environment: ["HOME": home], dir: TempDir("agent-home-two"))
        let repo = fixture.dir.child("repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let homes = "\(fixture.configuration.sandboxRoot)/*/*/*/home/.codex/sessions/*.jsonl"
        async let first = fixture.run(sandboxRequest(fixture, "fake:home-write=.codex/sessions/a.jsonl:secret-a fake:sleep=4", repo: repo))
        try await Task.sleep(for: .seconds(2))
        let second = try await fixture.run(sandboxRequest(fixture, "fake:glob=\(homes) fake:home-write=.codex/sessions/b.jsonl:b", repo: repo))
        #expect(second.logs?.stderr.contains("glob 0") == true, "the second run saw another run's transcript: \(second.logs?.stderr ?? "")")
        #expect(try await first.status == .completed)
        let visible = try CommandRunner.run("/bin/sh", ["-c", "ls \(homes) | wc -l"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(visible == "2", "both transcripts exist, each with its run (the check can fail): \(visible)")
    }
}
