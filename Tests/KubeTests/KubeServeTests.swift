import DispatchCore
import DispatchTestSupport
import Execution
import Foundation
import Hummingbird
import HummingbirdTesting
import Kube
import Testing

/// The k8s backend through a real `dispatch serve` configured by KUBECONFIG: the job-runner's callback arrives
/// over HTTP, and a killed serve re-attaches to the Job after its restart.
@Suite(.serialized) struct KubeServeTests {
    let dir = TempDir("kube-serve")

    func withServe(
        holdJobs: Bool,
        _ body: @Sendable (ServerProcess, FakeKubernetesAPI, String) async throws -> Void
    ) async throws {
        let port = freePort()
        let token = "serve-token-\(UUID().uuidString)"
        let kubelet = FakeKubernetesAPI.Kubelet(
            dispatchBinary: TestPaths.dispatchBinary,
            workRoot: dir.child("kubelet"),
            secrets: ["callback-token": token],
            environment: ["DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "1000"],
            dropCallback: false,
            holdJobs: holdJobs
        )
        let api = FakeKubernetesAPI(kubelet: kubelet)
        let app = Application(router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        let repo = dir.child("origin")
        _ = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        try await app.test(.live) { client in
            let kubeconfig = dir.child("kubeconfig.yaml")
            try """
            apiVersion: v1
            kind: Config
            current-context: fake
            clusters: [{name: fake, cluster: {server: "http://127.0.0.1:\(client.port!)"}}]
            users: [{name: robot, user: {token: \(api.token)}}]
            contexts: [{name: fake, context: {cluster: fake, user: robot, namespace: agents}}]
            """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
            let server = ServerProcess(
                stateDir: dir.child("state"),
                token: token,
                environment: [
                    "KUBECONFIG": kubeconfig, "DISPATCH_K8S_IMAGE": "agent-dispatch:test",
                    "DISPATCH_CALLBACK_URL": "http://127.0.0.1:\(port)/internal/agent-result",
                ],
                port: port
            )
            try await server.start()
            do {
                try await body(server, api, repo)
            } catch {
                server.stop(SIGKILL)
                api.stopAll()
                throw error
            }
            server.stop()
            api.stopAll()
        }
    }

    func dispatch(_ server: ServerProcess, repo: String, task: String) async throws -> String {
        let id = "serve-k8s-\(UUID().uuidString.prefix(8))"
        let reply = try await server.dispatch([
            "requestId": id, "task": task, "tool": "codex", "executionMode": "sandbox", "sandboxBackend": "k8s", "repoUrl": repo, "timeout": 60,
        ])
        #expect(reply.status == 202 || reply.status == 200, "\(reply.text)")
        return id
    }

    func awaitResult(_ server: ServerProcess, _ id: String) async throws -> [String: Any] {
        for _ in 0..<6 {
            let reply = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=20000")
            if let json = reply.json, let status = json["status"] as? String, !["running", "queued", "timeout"].contains(status),
                let result = json["result"] as? [String: Any]
            {
                return result
            }
        }
        throw KubeConfigError("no terminal result for \(id)")
    }

    @Test func theCallbackFinishesAK8sDispatchThroughServe() async throws {
        try await withServe(holdJobs: true) { server, api, repo in
            let id = try await dispatch(server, repo: repo, task: "fake:write=via-serve.txt:x fake:usage=7,2,3,1 fake:answer=called-back")
            let result = try await awaitResult(server, id)
            #expect(result["status"] as? String == "completed", "\(result)")
            #expect(result["result"] as? String == "called-back")
            // The pod's tokens come back with its report (CONTRACT §11).
            let usage = result["usage"] as? [String: Any] ?? [:]
            #expect(usage["inputTokens"] as? Int == 7 && usage["cachedInputTokens"] as? Int == 2 && usage["outputTokens"] as? Int == 3, "\(result)")
            // Counted in /metrics though the report carries no attempts.
            let metrics = try await server.send(.GET, "/metrics").text
            #expect(metrics.contains(#"dispatch_tokens_total{tool="codex",model="default",kind="input"} 7"#), "\(metrics)")
            #expect((result["artifacts"] as? [String: Any])?["touchedFiles"] as? [String] == ["via-serve.txt"])
            let name = JobNaming.jobName(requestId: id)
            #expect((result["job"] as? [String: Any])?["name"] as? String == name)
            // A `network` the pod would not honour is refused, nothing recorded (CONTRACT §10: the pod's NetworkPolicy).
            let narrowed = try await server.dispatch([
                "requestId": "serve-k8s-network", "task": "x", "tool": "codex", "executionMode": "sandbox", "sandboxBackend": "k8s",
                "repoUrl": repo, "network": "none",
            ])
            #expect(narrowed.status == 400 && narrowed.text.contains("network"), "\(narrowed.text)")
            #expect(try await server.send(.GET, "/internal/agent-result/serve-k8s-network").status == 404)
            #expect(api.hasJob(name), "the Job never got a terminal condition: only the callback can have finished this")
            #expect(api.requests.contains { $0.hasPrefix("POST /apis/batch/v1/namespaces/agents/jobs") })
        }
    }

    @Test func aServeKilledMidJobReattachesAfterRestart() async throws {
        try await withServe(holdJobs: false) { server, api, repo in
            let id = try await dispatch(server, repo: repo, task: "fake:write=survivor.txt:x fake:sleep=3 fake:answer=after-restart")
            let name = JobNaming.jobName(requestId: id)
            #expect(await eventually { api.hasJob(name) })
            server.stop(SIGKILL)
            try await Task.sleep(for: .milliseconds(500))
            try await server.start()
            let result = try await awaitResult(server, id)
            #expect(result["status"] as? String == "completed", "\(result)")
            #expect(result["result"] as? String == "after-restart")
            #expect((result["artifacts"] as? [String: Any])?["touchedFiles"] as? [String] == ["survivor.txt"])
        }
    }

    @Test func aSigtermedServeLeavesItsK8sRunsToTheNextServe() async throws {
        try await withServe(holdJobs: false) { server, api, repo in
            let id = try await dispatch(server, repo: repo, task: "fake:write=rollout.txt:x fake:sleep=4 fake:answer=survived-the-rollout")
            let name = JobNaming.jobName(requestId: id)
            #expect(await eventually { api.hasJob(name) && api.runnerEnvironment(name) != nil })
            let stopped = try #require(server.stop(SIGTERM))
            #expect(stopped.exitCode == 0, "\(stopped.stderr)")
            #expect(api.hasJob(name), "a shutdown deletes no Job")
            #expect(!api.requests.contains { $0.hasPrefix("DELETE") && $0.contains("/jobs/\(name)") })
            try await server.start()
            let result = try await awaitResult(server, id)
            #expect(result["status"] as? String == "completed", "\(result)")
            #expect(result["result"] as? String == "survived-the-rollout", "the next serve ends it with the Job's real result")
        }
    }
}
