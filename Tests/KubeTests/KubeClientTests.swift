import DispatchCore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Hummingbird
import HummingbirdTesting
import Kube
import Testing

@Suite struct KubeClientTests {
    let settings = JobSpecBuilder.Settings(
        namespace: "agents",
        image: "img:1",
        secretName: "s",
        callbackURL: "http://cb",
        callbackTokens: CallbackTokens(adminToken: "admin")
    )

    func withAPI(_ body: @Sendable (FakeKubernetesAPI, KubeClient) async throws -> Void) async throws {
        let api = FakeKubernetesAPI()
        let app = Application(router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let kube = try KubeClient(connection: KubeConnection(server: "http://127.0.0.1:\(client.port!)", namespace: "agents", token: api.token))
            do {
                try await body(api, kube)
            } catch {
                await kube.shutdown()
                throw error
            }
            await kube.shutdown()
        }
    }

    func manifest(_ requestId: String) -> KubeJobManifest {
        JobSpecBuilder(settings: settings).job(
            for: DispatchRequest(requestId: requestId, task: "t", tool: .codex),
            repoURL: "r",
            branch: nil,
            baseSha: nil,
            remainingSeconds: 60
        )
    }

    @Test func jobLifecycleThroughTheAPI() async throws {
        try await withAPI { api, kube in
            let manifest = self.manifest("req-1")
            let name = JobNaming.jobName(requestId: "req-1")
            let created = try await kube.createJob(manifest, requestId: "req-1")
            #expect(created.name == name)
            #expect(created.annotations[JobSpecBuilder.requestIdAnnotation] == "req-1")
            #expect(created.suspended, "no pod before its Secret exists")
            #expect(try await kube.pods(ofJob: name).isEmpty)
            let request = DispatchRequest(requestId: "req-1", task: "t", tool: .codex)
            try await kube.createSecret(JobSpecBuilder(settings: settings).secret(for: request, jobUID: created.uid), requestId: "req-1")
            try await kube.resumeJob(name)
            #expect(try await kube.job(name)?.suspended == false)
            #expect(try await kube.job(name)?.active == 1)
            #expect(try await kube.jobs(labelSelector: "\(JobSpecBuilder.managedByLabel)=agent-dispatch").items.map(\.name) == [name])

            api.setPod(ofJob: name, phase: "Running", log: "line 1\n---RESULT_START---\n{}\n---RESULT_END---\n")
            let pods = try await kube.pods(ofJob: name)
            #expect(pods.map(\.phase) == ["Running"])
            #expect(try await kube.podLog(pods[0].name, tailLines: 2).contains("---RESULT_END---"))
            #expect(try await kube.podLog(pods[0].name, limitBytes: 4) == "line")

            api.setPod(ofJob: name, waitingReason: "ImagePullBackOff")
            #expect(try await kube.pods(ofJob: name).first?.waitingReason == "ImagePullBackOff")
            #expect(try await kube.events(for: pods[0].name).map(\.message) == ["fake ImagePullBackOff"])

            api.finish(job: name, condition: "Failed", reason: "DeadlineExceeded")
            #expect(try await kube.job(name)?.terminalCondition?.reason == "DeadlineExceeded")

            #expect(api.secret(name) != nil)
            try await kube.deleteJob(name)
            #expect(!api.hasJob(name))
            #expect(api.secret(name) == nil, "the garbage collector removes the Secret the Job owns")
            #expect(try await kube.pods(ofJob: name).isEmpty, "Background propagation removes the pods")
            #expect(api.requests.contains { $0.contains("propagationPolicy=Background") })
            try await kube.deleteJob(name)  // already gone: not an error
            #expect(try await kube.job(name) == nil)
        }
    }

    @Test func alreadyExistsIsAdoptedOnlyForTheSameRequest() async throws {
        try await withAPI { _, kube in
            let first = self.manifest("same")
            _ = try await kube.createJob(first, requestId: "same")
            #expect(try await kube.createJob(first, requestId: "same").name == JobNaming.jobName(requestId: "same"))
            do {
                _ = try await kube.createJob(first, requestId: "other")
                Issue.record("adopted another request's Job")
            } catch let error as KubeError {
                #expect(error.status == 409)
                #expect(error.message.contains("same"))
            }
        }
    }

    @Test func serverErrorsAreRetriedAndStatusBodiesDecoded() async throws {
        try await withAPI { api, kube in
            api.failNext(2)
            #expect(try await kube.jobs(labelSelector: "a=b").items.isEmpty)
            api.failNext(10)
            do {
                _ = try await kube.job("x")
                Issue.record("no error after persistent 500s")
            } catch let error as KubeError {
                #expect(error.status == 500)
                #expect(error.reason == "InternalError")
            }
            api.failNext(0)
        }
    }

    @Test func wrongTokenIsAClearError() async throws {
        let api = FakeKubernetesAPI()
        let app = Application(router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let kube = try KubeClient(connection: KubeConnection(server: "http://127.0.0.1:\(client.port!)", namespace: "agents", token: "nope"))
            do {
                _ = try await kube.job("x")
                Issue.record("accepted a wrong token")
            } catch let error as KubeError {
                #expect(error.status == 401)
            }
            await kube.shutdown()
        }
    }

    @Test func watchStreamsChangesAfterTheResourceVersionAndSurfaces410() async throws {
        try await withAPI { api, kube in
            let selector = "\(JobSpecBuilder.managedByLabel)=\(JobSpecBuilder.managedByValue)"
            _ = try await kube.createJob(manifest("before"), requestId: "before")
            let list = try await kube.jobs(labelSelector: selector)
            api.closeWatches(afterEvents: 3)
            let stream = kube.watchJobs(labelSelector: selector, resourceVersion: list.resourceVersion, timeoutSeconds: 10)
            let name = JobNaming.jobName(requestId: "watched")
            _ = try await kube.createJob(manifest("watched"), requestId: "watched")
            api.finish(job: name, condition: "Complete")
            try await kube.deleteJob(name)
            var events: [JobWatchEvent] = []
            for try await event in stream { events.append(event) }
            #expect(events.map { "\($0)".prefix(while: { $0 != "(" }) } == ["added", "modified", "deleted"], "only changes after the list")
            #expect(events.allSatisfy { $0.job?.name == name })
            #expect(events[1].job?.terminalCondition?.type == "Complete")
            let versions = events.compactMap { $0.resourceVersion.flatMap { Int($0) } }
            #expect(versions == versions.sorted() && Set(versions).count == 3 && versions[0] > Int(list.resourceVersion ?? "0")!)

            api.expireNextWatches(2)
            for _ in 0..<2 {  // an ERROR event in a 200 stream, then an HTTP 410
                await #expect {
                    for try await _ in kube.watchJobs(labelSelector: selector, resourceVersion: "1", timeoutSeconds: 10) {}
                } throws: { error in
                    (error as? KubeError)?.status == 410 && "\(error)".contains("too old resource version")
                }
            }
        }
    }

    @Test func manyLongLivedStreamsAreOpenAtOnce() async throws {
        try await withAPI { _, kube in
            // One stream per running Job plus the watch: more than the HTTP/1 pool's default of 8 per host.
            let selector = "\(JobSpecBuilder.managedByLabel)=\(JobSpecBuilder.managedByValue)"
            let version = try await kube.jobs(labelSelector: selector).resourceVersion
            let streams = (0..<12).map { _ in kube.watchJobs(labelSelector: selector, resourceVersion: version, timeoutSeconds: 3) }
            try await Task.sleep(for: .milliseconds(500))
            _ = try await kube.createJob(manifest("fan-out"), requestId: "fan-out")
            let clock = ContinuousClock()
            let began = clock.now
            let firstEvents = try await withThrowingTaskGroup(of: (JobWatchEvent?, Duration).self) { group in
                for stream in streams {
                    group.addTask {
                        var iterator = stream.makeAsyncIterator()
                        return (try await iterator.next(), clock.now - began)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(firstEvents.count == 12)
            #expect(firstEvents.allSatisfy { $0.0?.job?.name == JobNaming.jobName(requestId: "fan-out") })
            #expect(firstEvents.allSatisfy { $0.1 < .seconds(2) }, "every stream had its own connection: \(firstEvents.map(\.1))")
        }
    }

    @Test func mistypedFieldsOfAnAPIObjectAreIgnoredNotFatal() throws {
        let job = try JSONDecoder().decode(
            KubeJob.self,
            from: Data(
                #"""
                {"metadata": {"name": "j", "uid": 7, "labels": {"a": 1}, "annotations": {"k": "v"}}, "spec": {"suspend": "yes"},
                 "status": {"active": "1", "failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": 5}]}}
                """#.utf8
            )
        )
        #expect(job.name == "j" && job.uid == nil && job.labels.isEmpty && job.annotations == ["k": "v"] && !job.suspended)
        #expect(job.active == 0 && job.failed == 2 && job.terminalCondition?.type == "Failed" && job.terminalCondition?.reason == nil)
        #expect(try JSONDecoder().decode([KubeJob].self, from: Data(#"[{"metadata": 3}, {}]"#.utf8)).map(\.name) == ["", ""])
        let pod = try JSONDecoder().decode(
            KubePod.self,
            from: Data(
                #"""
                {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"state": "odd"}, {"state": {"waiting": {"reason": "ErrImagePull"}}}],
                 "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no nodes"}]}}
                """#.utf8
            )
        )
        #expect(pod.name == "p" && pod.phase == "Unknown" && pod.waitingReason == "ErrImagePull" && pod.unschedulableMessage == "no nodes")
        #expect(throws: (any Error).self) { try JSONDecoder().decode(KubeJob.self, from: Data("[]".utf8)) }
    }

    @Test func inClusterConfigNeedsTheCAAndBracketsIPv6() throws {
        let dir = TempDir("sa")
        #expect(throws: KubeConfigError.self) {
            try KubeConnection.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1"], accountDirectory: dir.path)
        }
        try "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".write(toFile: dir.child("ca.crt"), atomically: true, encoding: .utf8)
        try "agents\n".write(toFile: dir.child("namespace"), atomically: true, encoding: .utf8)
        let connection = try KubeConnection.inCluster(
            environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"],
            accountDirectory: dir.path
        )
        #expect(connection.server == "https://[fd00::1]:6443")
        #expect(connection.namespace == "agents")
        #expect(connection.tokenFile == dir.child("token"))
    }
}
