import AgentProcess
import DispatchCore
import DispatchStore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Hummingbird
import HummingbirdTesting
import Kube
import Testing

@Suite(.serialized) struct KubeControllerTests {
    let dir = TempDir("kube-controller")

    /// Runs `body` with an engine whose k8s backend talks to a fake API that runs Jobs as local job-runners.
    func withCluster(image: String = "img:1", _ body: @Sendable (EngineFixture, FakeKubernetesAPI, String) async throws -> Void) async throws {
        try await withCluster(image: image) { fixture, api, repo, _, _ in try await body(fixture, api, repo) }
    }

    func withCluster(
        image: String = "img:1",
        _ body: @Sendable (EngineFixture, FakeKubernetesAPI, String, KubeClient, JobSpecBuilder.Settings) async throws -> Void
    ) async throws {
        var options = Cluster.Options()
        options.image = image
        try await Cluster.with(dir, options) { cluster in
            try await body(cluster.fixture, cluster.api, cluster.repo, cluster.kube, cluster.settings)
        }
    }

    func k8sRequest(_ fixture: EngineFixture, repo: String, task: String, timeout: Double = 60) -> DispatchRequest {
        var request = fixture.request(.codex, task, timeout: timeout)
        request.executionMode = .sandbox
        request.sandboxBackend = .k8s
        request.repoUrl = repo
        return request
    }

    @Test func aK8sDispatchCompletesEndToEndFromTheLogMarkers() async throws {
        try await withCluster { fixture, api, repo in
            // The Job clones the repo at an older baseSha; the same request in a local sandbox gives the same patch.
            let base = try GitFixture.git(["rev-parse", "HEAD"], in: repo).trimmingCharacters(in: .whitespacesAndNewlines)
            try GitFixture.write(["a.txt": "later\n", "b.txt": "bravo\n"], in: repo)
            try GitFixture.git(["add", "-A"], in: repo)
            try GitFixture.git(["commit", "-qm", "later"], in: repo)
            let task = "fake:write=new.txt:x fake:write=a.txt:edited fake:answer=from-the-pod"
            var request = k8sRequest(fixture, repo: repo, task: task)
            request.baseSha = base
            var local = fixture.request(.codex, task)
            local.executionMode = .sandbox
            local.sandboxBackend = .local
            local.cwd = repo
            local.baseSha = base
            let localResult = try await fixture.run(local)
            #expect(localResult.status == .completed, "\(localResult.error ?? "")")
            let result = try await fixture.run(request)
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.result == "from-the-pod")
            #expect(result.job?.name == JobNaming.jobName(requestId: request.requestId))
            #expect(result.job?.podName == "\(JobNaming.jobName(requestId: request.requestId))-pod")
            #expect(result.artifacts?.touchedFiles == ["a.txt", "new.txt"])
            #expect(result.artifacts?.touchedFiles == localResult.artifacts?.touchedFiles)
            #expect(result.artifacts?.patch == localResult.artifacts?.patch, "same patch as a local sandbox at the same baseSha")
            #expect(result.artifacts?.patch?.contains("-alpha") == true, "the diff is against baseSha, not the later commit")
            let env = try #require(api.runnerEnvironment(result.job!.name))
            #expect(env["BASE_SHA"] == base)
            #expect(result.logs?.stdout.contains("---RESULT_END---") == true, "the pod log is kept with the result")
            #expect(
                env["RESULT_CALLBACK_TOKEN"] == CallbackTokens(adminToken: Cluster.adminToken).token(for: request.requestId),
                "the request's own callback token reaches the pod through secretKeyRef"
            )
            #expect(try fixture.inbox(request.requestId).status == .completed)
        }
    }

    @Test func withoutRepoUrlTheJobClonesTheOriginOfTheCwdRepo() async throws {
        try await withCluster { fixture, _, repo in
            let checkout = dir.child("checkout-\(UUID().uuidString.prefix(4))")
            try GitFixture.git(["clone", "-q", repo, checkout], in: dir.path)
            var request = k8sRequest(fixture, repo: repo, task: "fake:write=from-origin.txt:x fake:answer=ok")
            request.repoUrl = nil
            request.cwd = checkout
            let result = try await fixture.run(request)
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.artifacts?.touchedFiles == ["from-origin.txt"])

            var orphan = k8sRequest(fixture, repo: repo, task: "x")
            orphan.repoUrl = nil
            orphan.cwd = dir.path
            let failed = try await fixture.run(orphan)
            #expect(failed.status == .failed)
            #expect(failed.error?.contains("origin remote") == true, "\(failed.error ?? "")")
        }
    }

    @Test func thePodLogIsMirroredLocallyWhileTheJobRuns() async throws {
        try await withCluster { fixture, _, repo in
            let request = k8sRequest(fixture, repo: repo, task: "fake:sleep=3 fake:answer=mirrored")
            let engine = fixture.engine
            let task = Task { try await engine.runOnce(request, token: CancelToken()).result }
            // While the Job runs, the row names a local file that fills with the pod's log (what `dispatch logs
            // --follow` reads), before any result exists.
            var path: String?
            var liveBeforeTheResult = false
            for _ in 0..<100 where !liveBeforeTheResult {
                if let record = try await engine.store.record(request.requestId), let logs = record.result.logs {
                    path = logs.stdoutPath
                    liveBeforeTheResult = !record.status.isTerminal && LogFile.read(logs.stdoutPath).contains("dispatch started")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(liveBeforeTheResult)
            let result = try await task.value
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.logs?.stdoutPath == path)
            let kept = LogFile.read(try #require(path))
            #expect(kept.contains("---RESULT_END---") && kept.components(separatedBy: "dispatch started").count == 2, "the whole log, once")
        }
    }

    @Test func imagePullBackOffFailsFastAndDeletesTheJob() async throws {
        try await withCluster(image: "registry.example.invalid/bad-image:1") { fixture, api, repo in
            let request = k8sRequest(fixture, repo: repo, task: "x")
            let clock = ContinuousClock()
            let start = clock.now
            let result = try await fixture.run(request)
            #expect(result.status == .failed)
            #expect(result.error?.contains("ImagePullBackOff") == true, "\(result.error ?? "")")
            #expect(result.error?.contains("events:") == true)
            #expect(!api.hasJob(JobNaming.jobName(requestId: request.requestId)))
            #expect(clock.now - start < .seconds(10))
        }
    }

    @Test func budgetExceededDeletesTheJob() async throws {
        try await withCluster(image: "pending-image:1") { fixture, api, repo in
            let request = k8sRequest(fixture, repo: repo, task: "x", timeout: 2)
            let clock = ContinuousClock()
            let start = clock.now
            let result = try await fixture.run(request)
            #expect(result.status == .failed)
            #expect(result.error?.contains("timed out after") == true, "\(result.error ?? "")")
            #expect(result.error?.contains("Job deleted") == true)
            #expect(!api.hasJob(JobNaming.jobName(requestId: request.requestId)))
            #expect(clock.now - start < .seconds(2) + .seconds(3))
        }
    }

    @Test func aRunnerThatTimesOutItselfReportsItAndLeavesNothing() async throws {
        try await withCluster { fixture, _, repo in
            let request = k8sRequest(fixture, repo: repo, task: "fake:write=partial.txt:x fake:hang", timeout: 4)
            let result = try await fixture.run(request)
            #expect(result.status == .failed)
            #expect(result.error?.contains("timed out after") == true, "\(result.error ?? "")")
            #expect(result.artifacts?.touchedFiles == ["partial.txt"], "the runner's partial work comes back through the log")
            #expect(await eventually(timeout: .seconds(10)) { survivors(of: request.requestId).isEmpty })
        }
    }

    @Test func cancelDeletesTheJob() async throws {
        try await withCluster { fixture, api, repo in
            let request = k8sRequest(fixture, repo: repo, task: "fake:hang")
            let token = CancelToken()
            let engine = fixture.engine
            let task = Task { try await engine.runOnce(request, token: token).result }
            #expect(await eventually { !survivors(of: request.requestId).isEmpty })
            token.cancel(reason: "cancelled by test")
            task.cancel()
            let result = try await task.value
            #expect(result.status == .cancelled)
            #expect(!api.hasJob(JobNaming.jobName(requestId: request.requestId)))
            // The pod log was read before the delete (which removes the pod and its log) and kept locally.
            #expect(result.logs?.stdout.contains("dispatch started") == true, "\(result.logs?.stdout ?? "no logs")")
            #expect(result.logs.map { LogFile.read($0.stdoutPath).contains("dispatch started") } == true)
            #expect(await eventually(timeout: .seconds(10)) { survivors(of: request.requestId).isEmpty })
        }
    }

    @Test func aRestartedServiceReattachesToARunningJob() async throws {
        try await withCluster { fixture, _, repo, kube, settings in
            let request = k8sRequest(fixture, repo: repo, task: "fake:sleep=1.5 fake:answer=reattached")
            // What a killed runner left behind: its Job still running in the cluster, and a `running` row it owned.
            let name = JobNaming.jobName(requestId: request.requestId)
            let manifest = JobSpecBuilder(settings: settings).job(for: request, repoURL: repo, branch: nil, baseSha: nil, remainingSeconds: 60)
            _ = try await kube.createJob(manifest, requestId: request.requestId)
            var running = DispatchResult(request: request, status: .running)
            running.startedAt = running.updatedAt
            // No `job` in the row: the runner died after creating the Job and before recording it.
            var dead = RunnerOwner.current(kind: .serve)
            dead.pid = 4_100_000  // above any pid this machine hands out: a runner that is gone
            _ = try await fixture.engine.store.insert(running, request: request, owner: dead)

            let service = DispatchService(engine: fixture.engine, maxConcurrent: 2, logger: .init(label: "test"))
            try await service.recover()
            let final = try await withRunning(service) { try await fixture.engine.awaitTerminal(request.requestId, timeout: .seconds(30)) }
            #expect(final?.status == .completed, "\(final?.result.error ?? "") owner \(String(describing: final?.owner))")
            #expect(final?.result.result == "reattached")
            #expect(final?.result.job?.name == name)
        }
    }

    @Test func recoveryFinalisesAMissingJobAndDeletesLeftoverJobsOfFinishedRequests() async throws {
        try await withCluster(image: "pending-image:1") { fixture, api, repo, kube, settings in
            var dead = RunnerOwner.current(kind: .serve)
            dead.pid = 4_100_000
            // A `running` row whose Job is gone from the cluster.
            let lost = k8sRequest(fixture, repo: repo, task: "x")
            var running = DispatchResult(request: lost, status: .running)
            running.startedAt = running.updatedAt
            running.job = JobInfo(name: JobNaming.jobName(requestId: lost.requestId), namespace: "agents")
            _ = try await fixture.engine.store.insert(running, request: lost, owner: dead)
            // A finished request whose Job still runs (its delete never reached the API).
            let done = k8sRequest(fixture, repo: repo, task: "x")
            _ = try await kube.createJob(
                JobSpecBuilder(settings: settings).job(for: done, repoURL: repo, branch: nil, baseSha: nil, remainingSeconds: 60),
                requestId: done.requestId
            )
            var completed = DispatchResult(request: done, status: .completed)
            completed.completedAt = completed.updatedAt
            _ = try await fixture.engine.store.insert(completed, request: done, owner: dead)
            // A Job of a request this store does not know: someone else's.
            let foreign = k8sRequest(fixture, repo: repo, task: "x")
            _ = try await kube.createJob(
                JobSpecBuilder(settings: settings).job(for: foreign, repoURL: repo, branch: nil, baseSha: nil, remainingSeconds: 60),
                requestId: foreign.requestId
            )

            let service = DispatchService(engine: fixture.engine, maxConcurrent: 2, logger: .init(label: "test"))
            try await service.recover()
            let (final, deleted) = try await withRunning(service) {
                let final = try await fixture.engine.awaitTerminal(lost.requestId, timeout: .seconds(30))
                return (final, await eventually(timeout: .seconds(10)) { !api.hasJob(JobNaming.jobName(requestId: done.requestId)) })
            }
            #expect(final?.status == .failed)
            #expect(final?.result.error?.contains("does not exist") == true, "\(final?.result.error ?? "")")
            #expect(deleted)
            #expect(api.hasJob(JobNaming.jobName(requestId: foreign.requestId)))
        }
    }

    /// Starts `request` and waits until its Job exists.
    func start(_ fixture: EngineFixture, _ api: FakeKubernetesAPI, _ request: DispatchRequest) async -> Task<DispatchResult, any Error> {
        let engine = fixture.engine
        let task = Task { try await engine.runOnce(request, token: CancelToken()).result }
        _ = await eventually { api.hasJob(JobNaming.jobName(requestId: request.requestId)) }
        return task
    }

    @Test(arguments: [
        ("Failed", "DeadlineExceeded", "exceeded activeDeadlineSeconds"), ("Failed", "BackoffLimitExceeded", "its pod failed (BackoffLimitExceeded)"),
        ("Failed", "PodFailurePolicy", "job-runner exited non-zero (PodFailurePolicy)"), ("Complete", "Completed", "holds no result block"),
    ])
    func jobConditionsWithoutAResultSayWhy(condition: String, reason: String, expected: String) async throws {
        try await withCluster(image: "pending-image:1") { fixture, api, repo in
            let request = k8sRequest(fixture, repo: repo, task: "x")
            let task = await start(fixture, api, request)
            api.finish(job: JobNaming.jobName(requestId: request.requestId), condition: condition, reason: reason)
            let result = try await task.value
            #expect(result.status == .failed)
            #expect(result.error?.contains(expected) == true, "\(result.error ?? "")")
        }
    }

    @Test func aHungAPICannotHoldTheDispatchPastItsBudget() async throws {
        try await withCluster(image: "pending-image:1") { fixture, api, repo in
            let request = k8sRequest(fixture, repo: repo, task: "x", timeout: 2)
            let clock = ContinuousClock()
            let began = clock.now
            let task = await start(fixture, api, request)
            api.stall(true)
            let result = try await task.value
            api.stall(false)
            #expect(result.status == .failed)
            #expect(result.error?.contains("timed out after") == true, "\(result.error ?? "")")
            #expect(clock.now - began < .seconds(2) + .seconds(3) + .seconds(3) + .seconds(1), "budget + in-flight call grace + cleanup window")
        }
    }

    @Test func theCallbackWinsWhenItArrivesFirstAndTerminalStaysFinal() async throws {
        try await withCluster(image: "pending-image:1") { fixture, api, repo in
            let request = k8sRequest(fixture, repo: repo, task: "x")
            let task = await start(fixture, api, request)
            let report = SandboxExecutionResult(requestId: request.requestId, state: .completed, output: "via-callback")
            let applied = try await fixture.engine.applyCallback(report)
            #expect(applied.ignored == false)
            let result = try await task.value
            #expect(result.status == .completed)
            #expect(result.result == "via-callback")
            api.finish(job: JobNaming.jobName(requestId: request.requestId), condition: "Failed", reason: "DeadlineExceeded")
            let late = try await fixture.engine.applyCallback(SandboxExecutionResult(requestId: request.requestId, state: .failed, error: "late"))
            #expect(late.ignored == true)
            #expect(try await fixture.engine.store.record(request.requestId)?.result.result == "via-callback")
        }
    }

    @Test func resultBlockSplitAcrossLinesIsParsed() {
        let log = """
            cloning…
            ---RESULT_START---
            {"requestId":"r","state":"completed",
            "backend":"k8s","output":"ok"}
            ---RESULT_END---
            trailing noise
            """
        #expect(ResultMarkers.parse(log)?.output == "ok")
        #expect(ResultMarkers.parse("---RESULT_START---\n{\"requestId\":") == nil)
    }
}
