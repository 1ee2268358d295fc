import DispatchCore
import DispatchStore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Kube
import Testing

/// How the controller reaches its one terminal result: watch, orderings of callback / condition / log, API
/// faults, pods that never start or get killed, and secrets that must never leak.
@Suite(.serialized) struct KubeFollowTests {
    let dir = TempDir("kube-follow")

    @Test func aClosedWatchAndA410LeadToARelistAndTheJobStillFinishesWithoutPolling() async throws {
        var options = Cluster.Options()
        options.backstopInterval = .seconds(600)  // the Job is never re-read directly after the first look: only the watch can finish it
        try await Cluster.with(dir, options) { cluster in
            cluster.api.closeWatches(afterEvents: 1)
            cluster.api.expireNextWatches(2)
            let request = cluster.request("fake:write=watched.txt:x fake:sleep=1.5 fake:answer=seen-through-the-watch")
            let result = try await cluster.fixture.run(request)
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.result == "seen-through-the-watch")
            #expect(result.artifacts?.touchedFiles == ["watched.txt"])
            let counts = cluster.api.watchCounts
            #expect(counts.gone == 2, "one ERROR-event 410 and one HTTP 410 were served")
            #expect(counts.watches >= 3)
            #expect(cluster.controller.watchLists >= 3, "every 410 and every closed stream is followed by a list")
            #expect(cluster.jobReads(cluster.jobName(request)) <= 3, "the Job's state came from the watch, not from polling it")
        }
    }

    @Test func theSharedWatchRunsOnlyWhileAJobIsFollowed() async throws {
        var options = Cluster.Options()
        options.watchTimeoutSeconds = 1  // a running watch is re-opened every second: its requests show it runs
        try await Cluster.with(dir, options) { cluster in
            try await withThrowingDiscardingTaskGroup { group in
                // As the service runs it: the backend's background work for the service's life.
                group.addTask { await cluster.controller.background() }
                try await Task.sleep(for: .milliseconds(1500))
                #expect(cluster.api.watchCounts.watches == 0, "nobody follows a Job: no watch")
                let result = try await cluster.fixture.run(cluster.request("fake:sleep=1.5 fake:answer=watched"))
                #expect(result.status == .completed, "\(result.error ?? "")")
                let after = cluster.api.watchCounts.watches
                #expect(after >= 1, "the follow was served by the watch")
                try await Task.sleep(for: .milliseconds(2500))
                #expect(cluster.api.watchCounts.watches == after, "the last follower left: the watch ended")
                group.cancelAll()
            }
        }
    }

    @Test func aWatchEndedAtItsTimeoutResumesFromTheLastResourceVersionWithoutListing() async throws {
        var options = Cluster.Options()
        options.backstopInterval = .seconds(600)
        options.watchTimeoutSeconds = 1  // the fake ends every watch after 1 s, as the API does at timeoutSeconds
        try await Cluster.with(dir, options) { cluster in
            let request = cluster.request("fake:sleep=2.5 fake:answer=resumed")
            let task = await cluster.start(request)
            // Another managed Job appears mid-run: the watches after it must start from its resourceVersion.
            try await Task.sleep(for: .milliseconds(1200))
            var parked = cluster.settings
            parked.image = "pending-image:1"
            let other = cluster.request("x")
            _ = try await cluster.kube.createJob(
                JobSpecBuilder(settings: parked).job(for: other, repoURL: cluster.repo, branch: nil, baseSha: nil, remainingSeconds: 60),
                requestId: other.requestId
            )
            let result = try await task.value
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.result == "resumed")
            #expect(cluster.api.watchCounts.watches >= 3)
            #expect(cluster.controller.watchLists == 1, "resumed from the last resourceVersion, no re-list")
            let versions = cluster.api.requests.filter { $0.contains("watch=1") }.compactMap { line -> Int? in
                line.split(separator: "&").first { $0.hasPrefix("resourceVersion=") }.flatMap { Int($0.dropFirst("resourceVersion=".count)) }
            }
            #expect(versions == versions.sorted() && versions.first! < versions.last!, "each watch starts where the last one ended: \(versions)")
        }
    }

    @Test func everyOrderingOfCallbackConditionAndLogYieldsTheSameSingleResult() async throws {
        var options = Cluster.Options()
        options.image = "pending-image:1"  // no runner: the test plays the pod
        try await Cluster.with(dir, options) { cluster in
            let orders = [
                ["callback", "condition", "log"], ["callback", "log", "condition"], ["condition", "callback", "log"],
                ["condition", "log", "callback"], ["log", "callback", "condition"], ["log", "condition", "callback"],
            ]
            var outcomes: [String] = []
            for order in orders {
                let request = cluster.request("x")
                let name = cluster.jobName(request)
                let artifacts = Artifacts(
                    headSha: String(repeating: "a", count: 40),
                    touchedFiles: ["same.txt"],
                    patch: "diff --git a/same.txt b/same.txt\n"
                )
                let report = SandboxExecutionResult(
                    requestId: request.requestId,
                    state: .completed,
                    startedAt: ISO8601.string(Date()),
                    job: JobInfo(name: name, namespace: "agents", podName: "\(name)-pod"),
                    artifacts: artifacts,
                    output: "one answer"
                )
                let block = String(decoding: try StoreJSON.encode(report), as: UTF8.self)
                let task = await cluster.start(request)
                var ignoredCallback: Bool?
                for step in order {
                    switch step {
                    case "callback": ignoredCallback = try await cluster.engine.applyCallback(report).ignored
                    case "condition": cluster.api.finish(job: name, condition: "Complete")
                    default: cluster.api.setPod(ofJob: name, phase: "Succeeded", log: "cloning\n---RESULT_START---\n\(block)\n---RESULT_END---\n")
                    }
                    try await Task.sleep(for: .milliseconds(300))
                }
                let result = try await task.value
                try await Task.sleep(for: .milliseconds(300))
                let stored = try #require(try await cluster.engine.store.record(request.requestId))
                #expect(stored.result == result, "\(order): nothing changed the terminal result afterwards")
                #expect(try cluster.fixture.inbox(request.requestId) == result, "\(order)")
                #expect(result.status == .completed, "\(order): \(result.error ?? "")")
                if order.first == "callback" { #expect(ignoredCallback == false, "\(order): the first arrival wins") }
                if order.last == "callback" { #expect(ignoredCallback == true, "\(order): a callback after the result changes nothing") }
                #expect(result.job?.podName == "\(name)-pod", "\(order)")
                outcomes.append(
                    "\(result.status) \(result.result ?? "-") \(result.error ?? "-") \(result.artifacts?.touchedFiles ?? []) \(result.artifacts?.patch ?? "-")"
                )
            }
            #expect(Set(outcomes).count == 1, "\(outcomes)")
            #expect(outcomes.first?.hasPrefix("completed one answer - [\"same.txt\"]") == true, "\(outcomes)")
        }
    }

    @Test func aConditionWithoutAnyResultStillFailsAfterTheResultGrace() async throws {
        var options = Cluster.Options()
        options.image = "pending-image:1"
        options.resultGrace = .seconds(1)
        try await Cluster.with(dir, options) { cluster in
            let request = cluster.request("x")
            let task = await cluster.start(request)
            let clock = ContinuousClock()
            let finished = clock.now
            cluster.api.setPod(ofJob: cluster.jobName(request), phase: "Succeeded", log: "job-runner: segfault before the result\n")
            cluster.api.finish(job: cluster.jobName(request), condition: "Complete")
            let result = try await task.value
            #expect(result.status == .failed)
            #expect(result.error?.contains("holds no result block") == true, "\(result.error ?? "")")
            #expect(result.logs?.stdout.contains("segfault before the result") == true, "the log that explains it is kept")
            #expect(clock.now - finished >= .seconds(1), "waited for a lagging log or callback")
            #expect(clock.now - finished < .seconds(5))
        }
    }

    @Test func apiErrorsAndAStalledAPIMidRunDoNotLoseTheResult() async throws {
        try await Cluster.with(dir) { cluster in
            let request = cluster.request("fake:write=through-faults.txt:x fake:sleep=4 fake:answer=survived")
            let task = await cluster.start(request)
            cluster.api.failNext(12)  // several calls exhaust their retries (4 attempts each) and fail
            try await Task.sleep(for: .milliseconds(1500))
            cluster.api.stall(true)  // then the API hangs for a while
            try await Task.sleep(for: .milliseconds(1500))
            cluster.api.stall(false)
            let result = try await task.value
            #expect(result.status == .completed, "\(result.error ?? "")")
            #expect(result.result == "survived")
            #expect(result.artifacts?.touchedFiles == ["through-faults.txt"])
            #expect(cluster.api.requests.count > 12)
        }
    }

    @Test func aPodKilledWithSIGTERMReportsCancelledFromTheRunner() async throws {
        try await Cluster.with(dir) { cluster in
            let request = cluster.request("fake:write=before-kill.txt:x fake:hang")
            let task = await cluster.start(request)
            #expect(await eventually { !survivors(of: request.requestId).isEmpty })
            try await Task.sleep(for: .milliseconds(300))
            cluster.api.terminatePod(ofJob: cluster.jobName(request))
            let result = try await task.value
            #expect(result.status == .cancelled, "\(result.error ?? "")")
            #expect(result.error?.contains("SIGTERM") == true, "\(result.error ?? "")")
            #expect(result.artifacts?.touchedFiles == ["before-kill.txt"], "work done before the kill is exported")
            #expect(await eventually(timeout: .seconds(10)) { survivors(of: request.requestId).isEmpty })
        }
    }

    @Test func aPodRejectedByAdmissionFailsWithTheJobsEvents() async throws {
        var options = Cluster.Options()
        options.image = "rejected-image:1"
        options.podGrace = .seconds(1)
        try await Cluster.with(dir, options) { cluster in
            let request = cluster.request("x")
            let result = try await cluster.fixture.run(request)
            #expect(result.status == .failed)
            #expect(result.error?.contains("created no pod within 1s") == true, "\(result.error ?? "")")
            #expect(result.error?.contains("FailedCreate") == true, "\(result.error ?? "")")
            #expect(result.error?.contains("violates PodSecurity") == true, "\(result.error ?? "")")
            #expect(!cluster.api.hasJob(cluster.jobName(request)))
        }
    }

    @Test func secretValuesNeverAppearInAManifestALogLineOrAResult() async throws {
        let log = CapturedLog()
        var options = Cluster.Options()
        let secrets = ["openai-api-key": "sk-live-0123456789abcdef", "anthropic-api-key": "sk-ant-secret-42", "admin": Cluster.adminToken]
        options.secrets = secrets
        options.dropCallback = false  // the runner tries the callback (refused port) and logs its failures
        options.logHandler = log.factory
        try await Cluster.with(dir, options) { cluster in
            let request = cluster.request("fake:write=s.txt:x fake:answer=no-secrets-here")
            let result = try await cluster.fixture.run(request)
            #expect(result.status == .completed, "\(result.error ?? "")")
            let name = cluster.jobName(request)
            #expect(cluster.api.runnerEnvironment(name)?["OPENAI_API_KEY"] == secrets["openai-api-key"], "the Secret did reach the pod")
            let manifest = JobSpecBuilder.render(
                JobSpecBuilder(settings: cluster.settings).job(
                    for: request,
                    repoURL: cluster.repo,
                    branch: nil,
                    baseSha: nil,
                    remainingSeconds: 60
                )
            )
            let podLog = cluster.api.podLog(ofJob: name)
            #expect(podLog.contains("callback failed"), "the pod log holds the runner's own log lines")
            let stored = String(decoding: try StoreJSON.encode(result), as: UTF8.self)
            let inbox = try String(contentsOfFile: cluster.engine.store.inboxPath(request.requestId), encoding: .utf8)
            for (key, value) in secrets {
                #expect(!manifest.contains(value), "\(key) in the manifest")
                #expect(!podLog.contains(value), "\(key) in the pod log")
                #expect(!log.text.contains(value), "\(key) in the controller's log")
                #expect(!stored.contains(value) && !inbox.contains(value), "\(key) in the result")
            }
            #expect(log.text.contains("job created"), "the controller's log was captured")
        }
    }
}
