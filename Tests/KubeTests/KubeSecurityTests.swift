import AsyncHTTPClient
import DispatchCore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Kube
import NIOCore
import Testing

/// What a Job pod holds, seen from inside one (the kubelet emulator runs the real job-runner and agent).
@Suite(.serialized) struct KubeSecurityTests {
    let dir = TempDir("kube-security")

    @Test func aMaximalTaskRunsThroughTheJobsOwnSecretAndThePodHoldsNoAdminToken() async throws {
        try await Cluster.with(dir) { cluster in
            let probe = dir.child("probe-\(UUID().uuidString.prefix(4)).txt")
            let head = "fake:answer=big-task-ok fake:probe=\(probe) "
            let task = head + String(repeating: "p", count: 256 * 1024 - head.utf8.count)
            #expect(task.utf8.count == 256 * 1024)
            let request = cluster.request(task)
            // A leftover Secret of that name (an older Job's) is replaced, not trusted.
            let stale = try JSONSerialization.data(withJSONObject: [
                "apiVersion": "v1", "kind": "Secret", "metadata": ["name": cluster.jobName(request)], "data": ["task": "c3RhbGU="],
            ])
            var staleRequest = HTTPClientRequest(url: "\(cluster.kube.connection.server)/api/v1/namespaces/agents/secrets")
            staleRequest.method = .POST
            staleRequest.headers.add(name: "Authorization", value: "Bearer \(cluster.api.token)")
            staleRequest.headers.add(name: "Content-Type", value: "application/json")
            staleRequest.body = .bytes(ByteBuffer(bytes: stale))
            #expect(try await HTTPClient.shared.execute(staleRequest, timeout: .seconds(10)).status.code == 201)
            let result = try await cluster.fixture.run(request)
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.result == "big-task-ok")

            let name = cluster.jobName(request)
            let env = try #require(cluster.api.runnerEnvironment(name))
            let longest = env.values.map(\.utf8.count).max() ?? 0
            #expect(longest < 64 * 1024, "every env value of the pod stays small (longest \(longest) bytes)")
            #expect(env["TASK_PROMPT_B64"] == nil, "the task came as a file")
            #expect(
                env["RESULT_CALLBACK_TOKEN"] == CallbackTokens(adminToken: Cluster.adminToken).token(for: request.requestId),
                "the pod holds its own request's token"
            )

            let requests = cluster.api.requests
            let create = try #require(requests.firstIndex { $0.hasPrefix("POST /apis/batch/v1/namespaces/agents/jobs") })
            let secret = try #require(requests.lastIndex { $0.hasPrefix("POST /api/v1/namespaces/agents/secrets") })
            let resume = try #require(requests.firstIndex { $0.hasPrefix("PATCH /apis/batch/v1/namespaces/agents/jobs/\(name)") })
            #expect(create < secret && secret < resume, "created suspended, then its Secret, then resumed")
            let stored = try #require(cluster.api.secret(name))
            let owners = (stored["metadata"] as? [String: Any])?["ownerReferences"] as? [[String: Any]] ?? []
            #expect(owners.first?["kind"] as? String == "Job" && owners.first?["uid"] as? String != nil, "owned by its Job")

            let seen = try String(contentsOfFile: probe, encoding: .utf8)
            #expect(seen.contains("parent env:") && seen.contains("/proc/"), "the probe ran")
            #expect(seen.contains("file "), "the probe read the pod's mounted files")
            #expect(!seen.contains(Cluster.adminToken), "no admin token in the agent's env, files or /proc")
        }
    }

    @Test func aPodWaitingOnAMissingSecretIsNotFailedFastButOtherConfigErrorsAre() async throws {
        var options = Cluster.Options()
        options.image = "pending-image:1"
        try await Cluster.with(dir, options) { cluster in
            let waiting = cluster.request("x", timeout: 3)
            let task = await cluster.start(waiting)
            cluster.api.setPod(
                ofJob: cluster.jobName(waiting),
                waitingReason: "CreateContainerConfigError",
                waitingMessage: #"secret "\#(cluster.jobName(waiting))" not found"#
            )
            let result = try await task.value
            #expect(result.status == .failed)
            #expect(result.error?.contains("timed out after") == true, "waited for the Secret until the budget: \(result.error ?? "")")

            let broken = cluster.request("y", timeout: 30)
            let other = await cluster.start(broken)
            cluster.api.setPod(ofJob: cluster.jobName(broken), waitingReason: "CreateContainerConfigError", waitingMessage: "invalid env")
            let failed = try await other.value
            #expect(failed.error?.contains("cannot start: CreateContainerConfigError") == true, "\(failed.error ?? "")")
        }
    }

    @Test func anotherRequestsJobOfTheSameNameIsNeverDeleted() async throws {
        try await Cluster.with(dir) { cluster in
            let request = cluster.request("fake:answer=x")
            let name = cluster.jobName(request)
            let foreign = try JSONSerialization.data(withJSONObject: [
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": ["name": name, "annotations": [JobSpecBuilder.requestIdAnnotation: "someone-else"]],
                "spec": ["suspend": true],
            ])
            var create = HTTPClientRequest(url: "\(cluster.kube.connection.server)/apis/batch/v1/namespaces/agents/jobs")
            create.method = .POST
            create.headers.add(name: "Authorization", value: "Bearer \(cluster.api.token)")
            create.headers.add(name: "Content-Type", value: "application/json")
            create.body = .bytes(ByteBuffer(bytes: foreign))
            #expect(try await HTTPClient.shared.execute(create, timeout: .seconds(10)).status.code == 201)
            let result = try await cluster.fixture.run(request)
            #expect(result.status == .failed)
            #expect(result.error?.contains("cannot create Job") == true, "\(result.error ?? "")")
            #expect(cluster.api.hasJob(name), "the other request's Job is left alone")
            #expect(!cluster.api.requests.contains { $0.hasPrefix("DELETE") && $0.contains("/jobs/\(name)") })
        }
    }
}
