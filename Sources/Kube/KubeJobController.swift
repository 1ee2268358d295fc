import DispatchCore
import Dispatcher
import Foundation
import Logging
import AgentProcess
import DispatchStore
import Sandbox

/// The k8s backend: creates the request's Job and reaches a terminal result from whichever comes first — the
/// callback (stored by `POST /internal/agent-result`), the Job's terminal condition (result read from the pod
/// log markers), a pod that cannot start (fail fast with the reason and Events), or the budget (Job deleted).
public struct KubeJobController: RemoteSandboxBackend {
    /// Waiting reasons that will not resolve by themselves.
    static let fatalWaitingReasons: Set<String> = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"]

    public let client: KubeClient
    public let settings: JobSpecBuilder.Settings
    /// How often pods are checked (image pulls, scheduling) and, without a watch event, the Job.
    let pollInterval: Duration
    /// How often the Job is read directly even though the watch knows it (a watch that silently stalls).
    let backstopInterval: Duration
    /// How long a Job may have no pod before its Events are read and it is failed (e.g. Pod Security rejections).
    let podGrace: Duration
    /// How long a finished Job's result may lag its condition (log not yet readable, callback in flight).
    let resultGrace: Duration
    let watcher: JobWatcher

    public init(
        client: KubeClient, settings: JobSpecBuilder.Settings, pollInterval: Duration = .seconds(1), backstopInterval: Duration = .seconds(10),
        podGrace: Duration = .seconds(30), resultGrace: Duration = .seconds(5), watchTimeoutSeconds: Int = 240
    ) {
        self.client = client
        self.settings = settings
        self.pollInterval = pollInterval
        self.backstopInterval = backstopInterval
        self.podGrace = podGrace
        self.resultGrace = resultGrace
        watcher = JobWatcher(
            client: client, selector: "\(JobSpecBuilder.managedByLabel)=\(JobSpecBuilder.managedByValue)", timeoutSeconds: watchTimeoutSeconds)
    }

    /// How many times the shared Job watch has listed (tests: a 410 or a closed stream leads to a re-list).
    public var watchLists: Int { watcher.lists }

    public func run(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine, logger: Logger,
        update: @Sendable (DispatchResult) async -> Void
    ) async -> DispatchResult {
        var result = result
        let name = JobNaming.jobName(requestId: request.requestId)
        let source: JobSource
        do {
            let defaultCwd = engine.configuration.defaultWorkdir
            source = try await BlockingWork.run("resolve the Job's source", timeout: deadline.remaining) {
                try JobSource.resolve(request, defaultCwd: defaultCwd)
            }
        } catch {
            return Self.failed(result, "cannot start k8s Job \(name): \(error)")
        }
        let manifest = JobSpecBuilder(settings: settings).job(
            for: request, repoURL: source.repoURL, branch: source.branch, baseSha: source.baseSha,
            remainingSeconds: max(1, deadline.remainingMs / 1000))
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
            await delete(name, logger: logger)
            return Self.failed(result, "cannot start Job \(name): \(error)")
        }
        result.job = JobInfo(name: name, namespace: settings.namespace)
        // Where the pod log is mirrored while the Job runs (`dispatch logs --follow`) and kept afterwards.
        result.logs = LogInfo(stdout: "", stderr: "", stdoutPath: Self.logPath(request, engine: engine), stderrPath: "")
        await update(result)
        logger.info("job created", metadata: ["job": "\(name)"])
        return await follow(name, request: request, result: result, deadline: deadline, token: token, engine: engine, logger: logger, started: true)
    }

    /// Creates the Job's own Secret, owned by the Job, then resumes the Job: its pod cannot exist before the Secret
    /// does, so a pod never waits on a missing Secret. Safe to repeat (a re-attach after a crash in between).
    func start(_ job: KubeJob, request: DispatchRequest, deadline: Deadline) async throws {
        try await client.createSecret(JobSpecBuilder(settings: settings).secret(for: request, jobUID: job.uid), requestId: request.requestId)
        let client = self.client, name = job.name
        try await limited(deadline) { try await client.resumeJob(name) }
    }

    public func attach(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine, logger: Logger
    ) async -> DispatchResult {
        let name = result.job?.name ?? JobNaming.jobName(requestId: request.requestId)
        logger.info("re-attaching to job", metadata: ["job": "\(name)"])
        return await follow(name, request: request, result: result, deadline: deadline, token: token, engine: engine, logger: logger, started: false)
    }

    /// Waits for the first terminal outcome of Job `name`: woken by the Job watch and by a committed callback,
    /// polling pods every `pollInterval` and reading the Job itself every `backstopInterval`.
    private func follow(
        _ name: String, request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine,
        logger: Logger, started: Bool
    ) async -> DispatchResult {
        var result = result
        var started = started
        let clock = ContinuousClock()
        let created = clock.now
        let wakeup = Wakeup()
        let following = watcher.follow(name, wakeup: wakeup)
        let callback = engine.notifier.subscribe(request.requestId)
        let callbackWake = Task {
            if await callback.value(timeout: deadline.remaining + Self.apiGrace) != nil { wakeup.signal() }
        }
        defer {
            watcher.unfollow(following)
            callback.cancel()
            callbackWake.cancel()
        }
        let logPath = Self.logPath(request, engine: engine)
        var mirror: Task<Void, Never>?
        defer { mirror?.cancel() }
        var seen = wakeup.generation
        var lastJobRead: ContinuousClock.Instant?
        var lastPodRead: ContinuousClock.Instant?
        var ended: (condition: KubeJob.Condition, at: ContinuousClock.Instant, log: PodLog?)?
        var jobSeen = false
        while true {
            if let record = try? await engine.store.record(request.requestId), record.status.isTerminal {
                return record.result  // the callback got there first
            }
            if token.isDetached {
                logger.info("leaving the Job to the next runner", metadata: ["job": "\(name)"])
                return result  // still running: the Job goes on and whoever starts next re-attaches
            }
            if token.reason != nil || Task.isCancelled {
                keep(await capture(name, within: Self.apiGrace), at: logPath, in: &result)
                await delete(name, logger: logger)
                result.status = .cancelled
                result.error = token.reason ?? "cancelled"
                return result
            }
            if deadline.isExpired {
                if let ended {
                    keep(ended.log, at: logPath, in: &result)
                    return Self.failed(result, Self.describe(ended.condition, job: name, deadline: deadline))
                }
                // One cleanup window (the API grace) for reading the log and deleting the Job.
                let cleanup = Deadline(budgetMs: Int(Self.apiGrace.milliseconds))
                let log = await capture(name, within: cleanup.remaining)
                keep(log, at: logPath, in: &result)
                await delete(name, logger: logger, within: max(cleanup.remaining, .milliseconds(500)))
                if let report = report(in: log, job: name), report.state != .running {
                    result.take(report)
                    return result
                }
                return Self.failed(result, "k8s Job \(name) timed out after \(deadline.elapsedMs)ms (budget \(deadline.budgetMs)ms) during agent; Job deleted")
            }
            do {
                let job: KubeJob?
                if case .exists(let known) = watcher.knowledge(of: name), let read = lastJobRead, clock.now - read < backstopInterval {
                    job = known
                } else {
                    job = try await limited(deadline) { try await client.job(name) }
                    lastJobRead = clock.now
                }
                guard let job else {
                    return Self.failed(result, jobSeen
                        ? "Job \(name) disappeared before it finished"
                        : "Job \(name) does not exist: it was deleted, or the runner that owned this request stopped before creating it")
                }
                jobSeen = true
                if job.suspended, !started, job.terminalCondition == nil {
                    // The runner that created it died before resuming it.
                    try await start(job, request: request, deadline: deadline)
                    started = true
                }
                if let condition = job.terminalCondition {
                    let log = await capture(name, within: deadline.remaining + Self.apiGrace)
                    if let report = report(in: log, job: name), report.state != .running {
                        keep(log, at: logPath, in: &result)
                        result.take(report)
                        return result
                    }
                    // The log (or the callback) can lag the condition: give them a moment before calling it.
                    let since = ended?.at ?? clock.now
                    ended = (condition, since, log)
                    if clock.now - since >= resultGrace {
                        keep(log, at: logPath, in: &result)
                        return Self.failed(result, Self.describe(condition, job: name, deadline: deadline))
                    }
                } else if lastPodRead.map({ clock.now - $0 >= pollInterval }) ?? true {
                    lastPodRead = clock.now
                    let pods = try await limited(deadline) { try await client.pods(ofJob: name) }
                    if mirror == nil, let pod = pods.first(where: { ["Running", "Succeeded", "Failed"].contains($0.phase) }) {
                        let client = self.client
                        mirror = Task.detached { await Self.mirror(pod.name, with: client, to: logPath) }
                    }
                    if let failure = await podFailure(name, pods: pods, created: created, clock: clock) {
                        keep(await capture(name, within: Self.apiGrace), at: logPath, in: &result)
                        await delete(name, logger: logger)
                        return Self.failed(result, failure)
                    }
                }
            } catch {
                logger.warning("k8s API error while following the Job", metadata: ["job": "\(name)", "error": "\(error)"])
            }
            seen = await wakeup.wait(after: seen, timeout: min(pollInterval, max(deadline.remaining, .milliseconds(10))))
        }
    }

    /// Deletes Jobs we manage that still run for a request this store holds as terminal (a cancel or budget
    /// delete that failed while the API was unreachable). Jobs of requests this store does not know are left
    /// alone: another runner may share the namespace.
    public func reconcile(engine: DispatchEngine, logger: Logger) async {
        let client = self.client, selector = watcher.selector
        let jobs: [KubeJob]
        do {
            jobs = try await limited(for: .seconds(60)) { try await client.jobs(labelSelector: selector).items }
        } catch {
            logger.warning("cannot list Jobs to reconcile", metadata: ["error": "\(error)"])
            return
        }
        for job in jobs where job.terminalCondition == nil {
            guard let requestId = job.annotations[JobSpecBuilder.requestIdAnnotation],
                let record = try? await engine.store.record(requestId), record.status.isTerminal
            else { continue }
            logger.info("deleting a leftover Job of a finished request", metadata: ["job": "\(job.name)", "request.id": "\(requestId)"])
            await delete(job.name, logger: logger)
        }
    }

    /// Why the Job's pod will never run, if it will not: a fatal waiting reason, Unschedulable, or no pod
    /// after `podGrace` (the Job's Events say why, e.g. a Pod Security rejection).
    private func podFailure(_ name: String, pods: [KubePod], created: ContinuousClock.Instant, clock: ContinuousClock) async -> String? {
        if let pod = pods.first(where: { $0.waitingReason.map(Self.fatalWaitingReasons.contains) ?? false && !Self.waitsForItsSecret($0, job: name) }) {
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
    static func describe(_ condition: KubeJob.Condition, job: String, deadline: Deadline) -> String {
        let detail = condition.message.map { ": \($0)" } ?? ""
        switch condition.reason {
        case "DeadlineExceeded":
            return "Job \(job) timed out after \(deadline.elapsedMs)ms (budget \(deadline.budgetMs)ms) during agent: it exceeded activeDeadlineSeconds and left no result\(detail)"
        case "BackoffLimitExceeded":
            return "Job \(job) failed: its pod failed (BackoffLimitExceeded) before job-runner reported a result\(detail)"
        case "PodFailurePolicy":
            return "Job \(job) failed: job-runner exited non-zero (PodFailurePolicy) without printing a result\(detail)"
        default:
            if condition.type == "Complete" || condition.type == "SuccessCriteriaMet" {
                return "Job \(job) completed but its pod log holds no result block (---RESULT_START--- … ---RESULT_END---)"
            }
            return "Job \(job) ended \(condition.type) (\(condition.reason ?? "no reason")) without a result in its pod log\(detail)"
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
        return try? await Task.detached {
            try await limited(for: limit) { () async -> PodLog? in
                guard let pod = try? await client.pods(ofJob: job).first, let text = try? await client.podLog(pod.name, limitBytes: 16 << 20)
                else { return nil }
                return PodLog(pod: pod.name, text: text)
            }
        }.value ?? nil
    }

    /// The runner's result block in the log, if it printed one.
    func report(in log: PodLog?, job: String) -> SandboxExecutionResult? {
        guard let log, var report = ResultMarkers.parse(log.text) else { return nil }
        if report.job?.podName == nil { report.job = JobInfo(name: job, namespace: settings.namespace, podName: log.pod) }
        return report
    }

    /// `<state>/k8s-logs/<requestId>.log`.
    static func logPath(_ request: DispatchRequest, engine: DispatchEngine) -> String {
        "\(engine.configuration.stateDir)/k8s-logs/\(request.requestId).log"
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
    private func delete(_ name: String, logger: Logger, within limit: Duration = apiGrace) async {
        let client = self.client
        do {
            try await Task.detached { try await limited(for: limit) { try await client.deleteJob(name) } }.value
        } catch {
            logger.error("cannot delete Job", metadata: ["job": "\(name)", "error": "\(error)"])
        }
    }

    static func failed(_ result: DispatchResult, _ error: String) -> DispatchResult {
        var result = result
        result.status = .failed
        result.error = error
        return result
    }
}

/// Finds the job-runner's result block in a pod log (the last complete one; it may span many lines).
public enum ResultMarkers {
    public static func parse(_ log: String) -> SandboxExecutionResult? {
        let lines = log.components(separatedBy: "\n").map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        guard let end = lines.lastIndex(of: JobRunner.resultEnd),
            let start = lines[..<end].lastIndex(of: JobRunner.resultStart)
        else { return nil }
        let body = lines[(start + 1)..<end].joined(separator: "\n")
        return try? JSONDecoder().decode(SandboxExecutionResult.self, from: Data(body.utf8))
    }
}

/// Stands in for the k8s backend when its configuration is unusable: every k8s request fails saying why.
public struct UnavailableKubeBackend: RemoteSandboxBackend {
    public let reason: String

    public init(reason: String) { self.reason = reason }

    public func run(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine, logger: Logger,
        update: @Sendable (DispatchResult) async -> Void
    ) async -> DispatchResult {
        KubeJobController.failed(result, "sandbox backend k8s is unavailable: \(reason)")
    }

    public func attach(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine, logger: Logger
    ) async -> DispatchResult {
        KubeJobController.failed(result, "cannot follow Job \(result.job?.name ?? "?"): sandbox backend k8s is unavailable: \(reason)")
    }
}
