import AgentProcess
import DispatchCore
import DispatchStore
import Execution
import Foundation
import Logging
import Sandbox
import Tracing

/// The k8s backend: creates the request's Job and reaches a terminal result from whichever comes first — the
/// callback (stored by `POST /internal/agent-result`; the engine, watching the store, settles the run's token), the Job's terminal
/// condition (result read from the pod log markers), a pod that cannot start (fail fast with the reason and
/// Events), or the budget (Job deleted).
package struct KubeBackend: ExecutionBackend {
    /// Waiting reasons that will not resolve by themselves.
    static let fatalWaitingReasons: Set<String> = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"]

    package let client: KubeClient
    package let settings: JobSpecBuilder.Settings
    /// Where pod logs are mirrored and kept (`<state>/k8s-logs`).
    let logDirectory: String
    /// The checkout whose origin and HEAD a request without `repoUrl`/`baseSha` defaults to.
    let defaultWorkdir: String
    /// How often pods are checked (image pulls, scheduling) and, without a watch event, the Job.
    let pollInterval: Duration
    /// How often the Job is read directly even though the watch knows it (a watch that silently stalls).
    let backstopInterval: Duration
    /// How long a Job may have no pod before its Events are read and it is failed (e.g. Pod Security rejections).
    let podGrace: Duration
    /// How long a finished Job's result may lag its condition (log not yet readable, callback in flight).
    let resultGrace: Duration
    let watcher: JobWatcher

    /// A backend over `client`, keeping pod logs under `logDirectory`.
    package init(
        client: KubeClient,
        settings: JobSpecBuilder.Settings,
        logDirectory: String,
        defaultWorkdir: String,
        pollInterval: Duration = .seconds(1),
        backstopInterval: Duration = .seconds(10),
        podGrace: Duration = .seconds(30),
        resultGrace: Duration = .seconds(5),
        watchTimeoutSeconds: Int = 240
    ) {
        self.client = client
        self.settings = settings
        self.logDirectory = logDirectory
        self.defaultWorkdir = defaultWorkdir
        self.pollInterval = pollInterval
        self.backstopInterval = backstopInterval
        self.podGrace = podGrace
        self.resultGrace = resultGrace
        watcher = JobWatcher(
            client: client,
            selector: "\(JobSpecBuilder.managedByLabel)=\(JobSpecBuilder.managedByValue)",
            timeoutSeconds: watchTimeoutSeconds
        )
    }

    /// How many times the shared Job watch has listed (tests: a 410 or a closed stream leads to a re-list).
    package var watchLists: Int { watcher.lists }

    /// A Job runs on without its runner: a new runner follows it.
    package var followsAfterRestart: Bool { true }

    /// The shared Job watch, while someone follows a Job.
    package func background() async { await watcher.run() }

    /// A request's `network` is not carried into a Job pod, whose network is its NetworkPolicy's (CONTRACT §5, §10):
    /// refused rather than silently unenforced.
    package func refusal(of request: DispatchRequest) -> RequestValidationError? {
        guard request.network != nil else { return nil }
        return RequestValidationError(
            field: "network",
            message: "is not honoured by the k8s backend: a Job pod's network is its NetworkPolicy's (see the deployment's k8s/ manifests)"
        )
    }

    /// Creates the Job (suspended), its Secret, resumes it, records its name, and follows it — one span of the
    /// dispatch's trace (CONTRACT §11).
    package func run(_ context: BackendContext) async -> BackendOutcome {
        await withSpan("k8s job") { span in
            span.attributes["k8s.job.name"] = JobNaming.jobName(requestId: context.request.requestId)
            return await runJob(context)
        }
    }

    /// ``run(_:)`` within its span.
    func runJob(_ context: BackendContext) async -> BackendOutcome {
        let request = context.request
        let deadline = context.deadline
        var result = context.known
        let name = JobNaming.jobName(requestId: request.requestId)
        let source: JobSource
        do {
            let defaultCwd = defaultWorkdir
            source = try await BlockingWork.run("resolve the Job's source", timeout: deadline.remaining) {
                try JobSource.resolve(request, defaultCwd: defaultCwd)
            }
        } catch {
            return Self.failed(result, "cannot start k8s Job \(name): \(error)")
        }
        let manifest = JobSpecBuilder(settings: settings).job(
            for: request,
            repoURL: source.repoURL,
            branch: source.branch,
            baseSha: source.baseSha,
            remainingSeconds: max(1, deadline.remainingMs / 1000)
        )
        let job: KubeJob
        do {
            job = try await client.createJob(manifest, requestId: request.requestId)
        } catch {
            // Nothing of ours to delete: the Job was not created, or it is another request's.
            return Self.failed(result, "cannot create Job \(name): \(error)")
        }
        do {
            if job.suspended { try await start(job, request: request, deadline: deadline) }
        } catch {
            await delete(name, logger: context.logger)
            return Self.failed(result, "cannot start Job \(name): \(error)")
        }
        result.job = JobInfo(name: name, namespace: settings.namespace)
        // Where the pod log is mirrored while the Job runs (`dispatch logs --follow`) and kept afterwards.
        result.logs = LogInfo(stdout: "", stderr: "", stdoutPath: logPath(request), stderrPath: "")
        await context.progress(result)
        context.logger.info("job created", metadata: ["job": "\(name)"])
        var follower = JobFollower(backend: self, name: name, context: context, result: result, started: true)
        return await follower.follow()
    }

    /// Creates the Job's own Secret, owned by the Job, then resumes the Job: its pod cannot exist before the Secret
    /// does, so a pod never waits on a missing Secret. Safe to repeat (a re-attach after a crash in between).
    func start(_ job: KubeJob, request: DispatchRequest, deadline: Deadline) async throws {
        try await client.createSecret(JobSpecBuilder(settings: settings).secret(for: request, jobUID: job.uid), requestId: request.requestId)
        let client = self.client
        let name = job.name
        try await limited(deadline) { try await client.resumeJob(name) }
    }

    /// Follows the Job a previous runner created (resuming it if that runner died before it could).
    package func attach(_ context: BackendContext) async -> BackendOutcome {
        let name = context.known.job?.name ?? JobNaming.jobName(requestId: context.request.requestId)
        context.logger.info("re-attaching to job", metadata: ["job": "\(name)"])
        var follower = JobFollower(backend: self, name: name, context: context, result: context.known, started: false)
        return await withSpan("k8s job follow") { span in
            span.attributes["k8s.job.name"] = name
            return await follower.follow()
        }
    }

    /// Deletes Jobs we manage that still run for a request this store holds as terminal (a cancel or budget
    /// delete that failed while the API was unreachable). Jobs of requests this store does not know are left
    /// alone: another runner may share the namespace.
    package func reconcile(isTerminal: @escaping @Sendable (String) async -> Bool, logger: Logger) async {
        let client = self.client
        let selector = watcher.selector
        let jobs: [KubeJob]
        do {
            jobs = try await limited(for: .seconds(60)) { try await client.jobs(labelSelector: selector).items }
        } catch {
            logger.warning("cannot list Jobs to reconcile", metadata: ["error": "\(error)"])
            return
        }
        for job in jobs where job.terminalCondition == nil {
            guard let requestId = job.annotations[JobSpecBuilder.requestIdAnnotation], await isTerminal(requestId) else { continue }
            logger.info("deleting a leftover Job of a finished request", metadata: ["job": "\(job.name)", "request.id": "\(requestId)"])
            await delete(job.name, logger: logger)
        }
    }

    /// Why the Job's pod will never run, if it will not: a fatal waiting reason, Unschedulable, or no pod
    /// after `podGrace` (the Job's Events say why, e.g. a Pod Security rejection).
    func podFailure(_ name: String, pods: [KubePod], created: ContinuousClock.Instant, clock: ContinuousClock) async -> String? {
        if let pod = pods.first(where: { $0.waitingReason.map(Self.fatalWaitingReasons.contains) ?? false && !Self.waitsForItsSecret($0, job: name) })
        {
            return "pod \(pod.name) of Job \(name) cannot start: \(pod.waitingReason!)" + (pod.waitingMessage.map { ": \($0)" } ?? "")
                + (await eventText(pod.name))
        }
        if let pod = pods.first(where: { $0.unschedulableMessage != nil }) {
            return "pod \(pod.name) of Job \(name) is unschedulable: \(pod.unschedulableMessage!)" + (await eventText(pod.name))
        }
        if pods.isEmpty, clock.now - created > podGrace {
            return "Job \(name) created no pod within \(podGrace.milliseconds / 1000)s" + (await eventText(name))
        }
        return nil
    }

    /// A pod held back only because the Job's own Secret is not there yet: not a failure to fail fast on (the
    /// kubelet retries once it exists; the budget still bounds the wait). Any other missing Secret is a
    /// misconfiguration and fails at once.
    static func waitsForItsSecret(_ pod: KubePod, job: String) -> Bool {
        guard pod.waitingReason == "CreateContainerConfigError", let message = pod.waitingMessage else { return false }
        return message.contains("secret \"\(job)\" not found")
    }

    /// Why a Job ended without a result block, in words, by condition reason.
    static func describe(_ condition: KubeJob.Condition, job: String, deadline: Deadline) -> DispatchFailure {
        let detail = condition.message.map { ": \($0)" } ?? ""
        switch condition.reason {
        case "DeadlineExceeded":
            return .timedOut(
                .init(
                    subject: "Job \(job)",
                    elapsedMs: deadline.elapsedMs,
                    budgetMs: deadline.budgetMs,
                    moment: .during("agent"),
                    detail: ": it exceeded activeDeadlineSeconds and left no result\(detail)"
                )
            )
        case "BackoffLimitExceeded":
            return .message("Job \(job) failed: its pod failed (BackoffLimitExceeded) before job-runner reported a result\(detail)")
        case "PodFailurePolicy":
            return .message("Job \(job) failed: job-runner exited non-zero (PodFailurePolicy) without printing a result\(detail)")
        default:
            if condition.type == "Complete" || condition.type == "SuccessCriteriaMet" {
                return .message("Job \(job) completed but its pod log holds no result block (---RESULT_START--- … ---RESULT_END---)")
            }
            return .message("Job \(job) ended \(condition.type) (\(condition.reason ?? "no reason")) without a result in its pod log\(detail)")
        }
    }

    /// Bounds one API call by what is left of the budget plus a grace, so an API that hangs cannot hold the
    /// dispatch past its budget (client timeouts × retries could otherwise add minutes).
    func limited<T: Sendable>(_ deadline: Deadline, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await limited(for: deadline.remaining + Self.apiGrace, operation)
    }

    /// Runs `operation`, giving up after `limit` (the HTTP request is cancelled).
    func limited<T: Sendable>(for limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw KubeError(status: 0, message: "Kubernetes API did not answer within \(limit.milliseconds)ms")
            }
            return value
        }
    }

    /// Extra time an API call may take past the budget (to read the log and delete the Job).
    static let apiGrace: Duration = .seconds(3)

    /// A pod's log as read before anything deletes it.
    struct PodLog: Sendable {
        var pod: String
        var text: String
    }

    /// The first pod's log (up to 16 MiB), read outside the caller's task (a cancelled task's requests are
    /// dropped) and within `limit`; `nil` when there is no pod or no answer.
    func capture(_ job: String, within limit: Duration) async -> PodLog? {
        let client = self.client
        let log = try? await uncancelled {
            try await limited(for: limit) { () async -> PodLog? in
                guard let pod = try? await client.pods(ofJob: job).first, let text = try? await client.podLog(pod.name, limitBytes: 16 << 20)
                else { return nil }
                return PodLog(pod: pod.name, text: text)
            }
        }
        return log ?? nil
    }

    /// The runner's result block in the log, if it printed one.
    func report(in log: PodLog?, job: String) -> SandboxExecutionResult? {
        guard let log, var report = ResultMarkers.parse(log.text) else { return nil }
        if report.job?.podName == nil { report.job = JobInfo(name: job, namespace: settings.namespace, podName: log.pod) }
        return report
    }

    /// `<state>/k8s-logs/<requestId>.log`.
    func logPath(_ request: DispatchRequest) -> String {
        "\(logDirectory)/\(request.requestId).log"
    }

    /// Copies the pod's log into `path` as the container writes it, for `dispatch logs --follow` while the Job
    /// runs. A broken stream starts over from the log's beginning (the file is rewritten with the same prefix).
    static func mirror(_ pod: String, with client: KubeClient, to path: String) async {
        var failures = 0
        while !Task.isCancelled {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else { return }
            defer { try? file.close() }
            do {
                for try await chunk in client.followPodLog(pod) { try file.write(contentsOf: chunk) }
                return  // the container ended
            } catch {
                failures += 1
                guard (try? await Task.sleep(for: .milliseconds(min(500 * failures, 5_000)))) != nil else { return }
            }
        }
    }

    /// Keeps the whole pod log at `path` (replacing the live mirror) and its tail in the result, so `dispatch logs`
    /// shows it after the Job is gone (the pod log holds both of the runner's streams; they are reported as stdout).
    func keep(_ log: PodLog?, at path: String, in result: inout DispatchResult) {
        guard let log, !log.text.isEmpty else { return }
        guard (try? AtomicFile.write(Data(log.text.utf8), to: path)) != nil else { return }
        result.logs = LogInfo(stdout: LogFile.tail(path, maxBytes: LogInfo.tailBytes), stderr: "", stdoutPath: path, stderrPath: "")
    }

    private func eventText(_ name: String) async -> String {
        guard let events = try? await client.events(for: name), !events.isEmpty else { return "" }
        return "; events: " + events.suffix(5).map { "\($0.reason): \($0.message)" }.joined(separator: "; ")
    }

    /// Deletes outside the caller's task (a cancelled task would abort the request before it is sent), bounded
    /// by the API grace so a hung API cannot hold the dispatch.
    func delete(_ name: String, logger: Logger, within limit: Duration = apiGrace) async {
        let client = self.client
        do {
            try await uncancelled { try await limited(for: limit) { try await client.deleteJob(name) } }
        } catch {
            logger.error("cannot delete Job", metadata: ["job": "\(name)", "error": "\(error)"])
        }
    }

    static func failed(_ result: DispatchResult, _ error: String) -> BackendOutcome {
        .ended(failing(result, .message(error)))
    }

    static func failing(_ result: DispatchResult, _ failure: DispatchFailure) -> DispatchResult {
        var result = result
        result.fail(failure)
        return result
    }
}

/// Finds the job-runner's result block in a pod log (the last complete one; it may span many lines).
package enum ResultMarkers {
    /// The line before the block.
    package static let start = "---RESULT_START---"
    /// The line after the block.
    package static let end = "---RESULT_END---"

    /// The last complete result block in `log`, decoded; `nil` when there is none.
    package static func parse(_ log: String) -> SandboxExecutionResult? {
        let lines = log.components(separatedBy: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        guard let end = lines.lastIndex(of: Self.end),
            let start = lines[..<end].lastIndex(of: Self.start)
        else { return nil }
        let body = lines[(start + 1)..<end].joined(separator: "\n")
        return try? JSONDecoder().decode(SandboxExecutionResult.self, from: Data(body.utf8))
    }
}

/// Stands in for the k8s backend when its configuration is unusable: every k8s request fails saying why.
package struct UnavailableKubeBackend: ExecutionBackend {
    package let reason: String

    /// A backend that refuses every run with `reason`.
    package init(reason: String) { self.reason = reason }

    /// Fails at once, saying why there is no cluster.
    package func run(_ context: BackendContext) async -> BackendOutcome {
        KubeBackend.failed(context.known, "sandbox backend k8s is unavailable: \(reason)")
    }

    /// A Job may still run: a runner with a working configuration can follow it.
    package var followsAfterRestart: Bool { true }

    /// Fails at once, saying why the Job cannot be followed.
    package func attach(_ context: BackendContext) async -> BackendOutcome {
        KubeBackend.failed(context.known, "cannot follow Job \(context.known.job?.name ?? "?"): sandbox backend k8s is unavailable: \(reason)")
    }
}
