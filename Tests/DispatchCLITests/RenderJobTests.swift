import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

@Suite struct RenderJobTests {
    @Test func rendersTheSampleRequestsAndRejectsBadOnes() throws {
        let dir = TempDir("render")
        let env = ["DISPATCH_K8S_NAMESPACE": "agents", "DISPATCH_K8S_IMAGE": "img:1", "DISPATCH_TOKEN": "must-not-leak"]
        let sample = "\(TestPaths.packageRoot)/k8s/samples/request-long-id.json"
        let first = try CommandRunner.run(TestPaths.dispatchBinary, ["k8s", "render-job", "--request", sample], environment: env)
        #expect(first.exitCode == 0, "\(first.stderr)")
        let second = try CommandRunner.run(TestPaths.dispatchBinary, ["k8s", "render-job", "--request", sample], environment: env)
        #expect(first.stdout == second.stdout, "rendering is deterministic")
        #expect(!first.stdout.contains("must-not-leak"))
        let list = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        #expect(list["kind"] as? String == "List")
        let items = try #require(list["items"] as? [[String: Any]])
        #expect(items.map { $0["kind"] as? String } == ["Job", "Secret"], "every object the request creates")
        let job = items[0]
        let name = try #require((job["metadata"] as? [String: Any])?["name"] as? String)
        #expect(name.count <= 63 && name.hasPrefix("dispatch-workflow-2026-11-23-story-with"))
        #expect((job["metadata"] as? [String: Any])?["namespace"] as? String == "agents")

        let bad = dir.child("bad.json")
        try #"{"requestId":"../x","task":"t","tool":"codex"}"#.write(toFile: bad, atomically: true, encoding: .utf8)
        let rejected = try CommandRunner.run(TestPaths.dispatchBinary, ["k8s", "render-job", "--request", bad], environment: env)
        #expect(rejected.exitCode == 2)
        #expect(rejected.stderr.contains("requestId"))
    }

    @Test func credentialsInAnOriginAppearNowhere() throws {
        let dir = TempDir("render-creds")
        let repo = dir.child("repo")
        _ = try GitFixture.makeRepo(at: repo, files: ["a.txt": "a\n"])
        try GitFixture.git(["remote", "add", "origin", "https://bot:S3cret@git.example.invalid/app.git"], in: repo)
        let request = dir.child("request.json")
        try #"{"requestId":"creds-1","task":"t","tool":"codex","executionMode":"sandbox","sandboxBackend":"k8s","cwd":"\#(repo)"}"#
            .write(toFile: request, atomically: true, encoding: .utf8)
        let env = ["DISPATCH_K8S_NAMESPACE": "agents", "DISPATCH_STATE_DIR": dir.child("state")]
        let rendered = try CommandRunner.run(TestPaths.dispatchBinary, ["k8s", "render-job", "--request", request], environment: env)
        #expect(rendered.exitCode == 2)
        #expect(rendered.stderr.contains("repoUrl"), "\(rendered.stderr)")
        let run = try CommandRunner.run(TestPaths.dispatchBinary, ["run", "--request", request, "--json"], environment: env)
        #expect(run.exitCode == 1)
        for output in [rendered.stdout, rendered.stderr, run.stdout, run.stderr, LogFile.read("\(dir.child("state"))/inbox/creds-1.json")] {
            #expect(!output.contains("S3cret"), "the password appears nowhere: \(output.prefix(300))")
        }
        let direct = dir.child("direct.json")
        try #"{"requestId":"creds-2","task":"t","tool":"codex","repoUrl":"https://bot:S3cret@git.example.invalid/app.git"}"#
            .write(toFile: direct, atomically: true, encoding: .utf8)
        let refused = try CommandRunner.run(TestPaths.dispatchBinary, ["run", "--request", direct], environment: env)
        #expect(refused.exitCode == 2)
        #expect(refused.stderr.contains("repoUrl") && !refused.stderr.contains("S3cret"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.child("state"))/inbox/creds-2.json"), "nothing recorded")
    }
}
