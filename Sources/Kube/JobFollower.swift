import DispatchCore
import Execution
import Foundation
import Logging

/// Follows one Job to the first terminal outcome: woken by the Job watch and by the run's token (a stored
/// callback, a cancel, a shutdown letting go), polling pods every `pollInterval` and reading the Job itself
/// every `backstopInterval`.
struct JobFollower {
    let backend: KubeBackend
    let name: String
    let context: BackendContext
    var result: DispatchResult
    /// Whether the Job was resumed (a re-attach resumes one its creator left suspended).
    var started: Bool

    let clock = ContinuousClock()
    let created = ContinuousClock.now
    var lastJobRead: ContinuousClock.Instant?
    var lastPodRead: ContinuousClock.Instant?
    /// The terminal condition first seen without a result, when, and the log read then.
    var ended: (condition: KubeJob.Condition, at: ContinuousClock.Instant, log: KubeBackend.PodLog?)?
    var jobSeen = false
    var mirror: Task<Void, Never>?

    init(backend: KubeBackend, name: String, context: BackendContext, result: DispatchResult, started: Bool) {
        self.backend = backend
        self.name = name
        self.context = context
        self.result = result
        self.started = started
    }

    var logger: Logger { context.logger }
    var deadline: Deadline { context.deadline }
    var logPath: String { backend.logPath(context.request) }

    /// Loops until an outcome: each pass looks at the token, the budget and the Job, then waits for a wakeup.
    mutating func follow() async -> BackendOutcome {
        let wakeup = Wakeup()
        let following = backend.watcher.follow(name, wakeup: wakeup)
        let observer = context.cancellation.observe { wakeup.signal() }
        defer {
            backend.watcher.unfollow(following)
            context.cancellation.removeObserver(observer)
            mirror?.cancel()
        }
        var seen = wakeup.generation
        while true {
            if let outcome = await checkToken() { return outcome }
            if deadline.isExpired { return await outOfBudget() }
            do {
                if let outcome = try await look() { return outcome }
            } catch {
                logger.warning("k8s API error while following the Job", metadata: ["job": "\(name)", "error": "\(error)"])
            }
            seen = await wakeup.wait(after: seen, timeout: min(backend.pollInterval, max(deadline.remaining, .milliseconds(10))))
        }
    }

    /// A stored callback, a shutdown letting go, or a cancel (the Job is deleted, its log kept).
    mutating func checkToken() async -> BackendOutcome? {
        let token = context.cancellation
        if token.isSettled { return .settledElsewhere }  // the callback got there first
        if token.isDetached {
            logger.info("leaving the Job to the next runner", metadata: ["job": "\(name)"])
            return .letGo(result)  // still running: the Job goes on and whoever starts next re-attaches
        }
        guard token.reason != nil || Task.isCancelled else { return nil }
        backend.keep(await backend.capture(name, within: KubeBackend.apiGrace), at: logPath, in: &result)
        await backend.delete(name, logger: logger)
        result.fail(.cancelled(reason: token.reason ?? "cancelled"))
        return .ended(result)
    }

    /// The budget is spent: a condition already seen explains it; otherwise the log is read and the Job deleted.
    mutating func outOfBudget() async -> BackendOutcome {
        if let ended {
            backend.keep(ended.log, at: logPath, in: &result)
            return KubeBackend.failed(result, KubeBackend.describe(ended.condition, job: name, deadline: deadline))
        }
        // One cleanup window (the API grace) for reading the log and deleting the Job.
        let cleanup = Deadline(budgetMs: Int(KubeBackend.apiGrace.milliseconds))
        let log = await backend.capture(name, within: cleanup.remaining)
        backend.keep(log, at: logPath, in: &result)
        await backend.delete(name, logger: logger, within: max(cleanup.remaining, .milliseconds(500)))
        if let report = backend.report(in: log, job: name), report.state != .running {
            result.take(report)
            return .ended(result)
        }
        return .ended(KubeBackend.failing(result, .timedOut(.init(
            subject: "k8s Job \(name)", elapsedMs: deadline.elapsedMs, budgetMs: deadline.budgetMs, moment: .during("agent"),
            detail: "; Job deleted"))))
    }

    /// Reads the Job (from the watch, or the API every backstop interval) and acts on what it shows.
    mutating func look() async throws -> BackendOutcome? {
        let job: KubeJob?
        if case .exists(let known) = backend.watcher.knowledge(of: name), let read = lastJobRead, clock.now - read < backend.backstopInterval {
            job = known
        } else {
            let client = backend.client, name = self.name
            job = try await backend.limited(deadline) { try await client.job(name) }
            lastJobRead = clock.now
        }
        guard let job else {
            return KubeBackend.failed(result, jobSeen
                ? "Job \(name) disappeared before it finished"
                : "Job \(name) does not exist: it was deleted, or the runner that owned this request stopped before creating it")
        }
        jobSeen = true
        if job.suspended, !started, job.terminalCondition == nil {
            // The runner that created it died before resuming it.
            try await backend.start(job, request: context.request, deadline: deadline)
            started = true
        }
        if let condition = job.terminalCondition { return await concluded(condition) }
        guard lastPodRead.map({ clock.now - $0 >= backend.pollInterval }) ?? true else { return nil }
        lastPodRead = clock.now
        return try await checkPods()
    }

    /// The Job ended: its log's result block, or — once the result grace has passed without one — why not.
    mutating func concluded(_ condition: KubeJob.Condition) async -> BackendOutcome? {
        let log = await backend.capture(name, within: deadline.remaining + KubeBackend.apiGrace)
        if let report = backend.report(in: log, job: name), report.state != .running {
            backend.keep(log, at: logPath, in: &result)
            result.take(report)
            return .ended(result)
        }
        // The log (or the callback) can lag the condition: give them a moment before calling it.
        let since = ended?.at ?? clock.now
        ended = (condition, since, log)
        guard clock.now - since >= backend.resultGrace else { return nil }
        backend.keep(log, at: logPath, in: &result)
        return KubeBackend.failed(result, KubeBackend.describe(condition, job: name, deadline: deadline))
    }

    /// Starts the log mirror once a pod runs, and fails fast on a pod that will never run.
    mutating func checkPods() async throws -> BackendOutcome? {
        let client = backend.client, name = self.name, logPath = self.logPath
        let pods = try await backend.limited(deadline) { try await client.pods(ofJob: name) }
        if mirror == nil, let pod = pods.first(where: { ["Running", "Succeeded", "Failed"].contains($0.phase) }) {
            // Unstructured on purpose: it lives as long as the follow, which cancels it on every way out.
            mirror = Task { await KubeBackend.mirror(pod.name, with: client, to: logPath) }
        }
        guard let failure = await backend.podFailure(name, pods: pods, created: created, clock: clock) else { return nil }
        backend.keep(await backend.capture(name, within: KubeBackend.apiGrace), at: logPath, in: &result)
        await backend.delete(name, logger: logger)
        return KubeBackend.failed(result, failure)
    }
}
