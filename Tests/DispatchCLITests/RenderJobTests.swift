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
        let job = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        let name = try #require((job["metadata"] as? [String: Any])?["name"] as? String)
        #expect(name.count <= 63 && name.hasPrefix("dispatch-workflow-2026-11-23-story-with"))
        #expect((job["metadata"] as? [String: Any])?["namespace"] as? String == "agents")

        let bad = dir.child("bad.json")
        try #"{"requestId":"../x","task":"t","tool":"codex"}"#.write(toFile: bad, atomically: true, encoding: .utf8)
        let rejected = try CommandRunner.run(TestPaths.dispatchBinary, ["k8s", "render-job", "--request", bad], environment: env)
        #expect(rejected.exitCode == 2)
        #expect(rejected.stderr.contains("requestId"))
    }
}
