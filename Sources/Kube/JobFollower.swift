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
    /// Where ``checkPods()`` names the first pod that runs: the log mirror, a child of ``follow()``, starts on it.
    var podRunning: AsyncStream<String>.Continuation?
    var mirroring = false

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

    /// Follows the Job to an outcome, with the log mirror beside it once a pod runs (ended with the follow).
    mutating func follow() async -> BackendOutcome {
        let (pods, podRunning) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
        self.podRunning = podRunning
        let client = backend.client
        let logPath = self.logPath
        return await withDiscardingTaskGroup(returning: BackendOutcome.self) { group in
            group.addTask {
                for await pod in pods {
                    await KubeBackend.mirror(pod, with: client, to: logPath)
                    return
                }
            }
            let outcome = await followJob()
            podRunning.finish()
            group.cancelAll()
            return outcome
        }
    }

    /// Loops until an outcome: each pass observes the token, the budget and the Job, lets ``decide(_:job:resultGrace:)``
    /// choose, and acts; then waits for a wakeup (a watch event, a token change, the poll interval).
    mutating func followJob() async -> BackendOutcome {
        let wakeup = Wakeup()
        let following = backend.watcher.follow(name, wakeup: wakeup)
        let observer = context.cancellation.observe { wakeup.signal() }
        defer {
            backend.watcher.unfollow(following)
            context.cancellation.removeObserver(observer)
        }
        var seen = wakeup.generation
        while true {
            do {
                let observation = try await observe()
                switch await perform(Self.decide(observation, job: name, resultGrace: backend.resultGrace)) {
                case .finished(let outcome): return outcome
                case .again: continue
                case .waiting: break
                }
            } catch {
                logger.warning("k8s API error while following the Job", metadata: ["job": "\(name)", "error": "\(error)"])
            }
            seen = await wakeup.wait(after: seen, timeout: min(backend.pollInterval, max(deadline.remaining, .milliseconds(10))))
        }
    }

    /// Where the loop goes after an action.
    enum Step {
        case finished(BackendOutcome)
        case again
        case waiting
    }

    /// One look at the token, the budget and the Job (from the watch, or the API every backstop interval); reads the
    /// log of an ended Job and, every poll interval, the pods of a running one (starting the log mirror).
    mutating func observe() async throws -> FollowObservation {
        let token = context.cancellation
        if token.isSettled { return .settledElsewhere }
        if token.isDetached { return .letGo }
        if token.reason != nil || Task.isCancelled { return .cancelled(reason: token.reason ?? "cancelled") }
        if deadline.isExpired { return .budgetSpent(ended: ended?.condition) }
        guard let job = try await readJob() else { return .jobMissing(seenBefore: jobSeen) }
        jobSeen = true
        if job.suspended, !started, job.terminalCondition == nil { return .jobSuspended }
        if let condition = job.terminalCondition {
            let log = await backend.capture(name, within: deadline.remaining + KubeBackend.apiGrace)
            let hasReport = backend.report(in: log, job: name).map { $0.state != .running } ?? false
            let since = hasReport ? clock.now : (ended?.at ?? clock.now)
            ended = (condition, since, log)
            return .jobEnded(condition, hasReport: hasReport, waited: clock.now - since)
        }
        guard lastPodRead.map({ clock.now - $0 >= backend.pollInterval }) ?? true else { return .jobRunning(podFailure: nil) }
        lastPodRead = clock.now
        return .jobRunning(podFailure: try await checkPods())
    }

    /// The Job as the watch knows it, read from the API when the watch does not or every backstop interval.
    mutating func readJob() async throws -> KubeJob? {
        if case .exists(let known) = backend.watcher.knowledge(of: name), let read = lastJobRead, clock.now - read < backend.backstopInterval {
            return known
        }
        let client = backend.client
        let name = self.name
        let job = try await backend.limited(deadline) { try await client.job(name) }
        lastJobRead = clock.now
        return job
    }

    /// Does what ``decide(_:job:resultGrace:)`` chose.
    mutating func perform(_ action: FollowAction) async -> Step {
        switch action {
        case .settle:
            return .finished(.settledElsewhere)
        case .letGo:
            logger.info("leaving the Job to the next runner", metadata: ["job": "\(name)"])
            return .finished(.letGo(result))
        case .cancel(let reason):
            backend.keep(await backend.capture(name, within: KubeBackend.apiGrace), at: logPath, in: &result)
            await backend.delete(name, logger: logger)
            result.fail(.cancelled(reason: reason))
            return .finished(.ended(result))
        case .failAsEnded(let condition):
            backend.keep(ended?.log, at: logPath, in: &result)
            return .finished(.ended(KubeBackend.failing(result, KubeBackend.describe(condition, job: name, deadline: deadline))))
        case .cleanUpAfterBudget:
            return .finished(await cleanUpAfterBudget())
        case .fail(let reason):
            return .finished(KubeBackend.failed(result, reason))
        case .resume:
            return await resume()
        case .takeReport:
            backend.keep(ended?.log, at: logPath, in: &result)
            if let report = backend.report(in: ended?.log, job: name) { result.take(report) }
            return .finished(.ended(result))
        case .deleteAndFail(let reason):
            backend.keep(await backend.capture(name, within: KubeBackend.apiGrace), at: logPath, in: &result)
            await backend.delete(name, logger: logger)
            return .finished(KubeBackend.failed(result, reason))
        case .wait:
            return .waiting
        }
    }

    /// Resumes a Job its creator left suspended (creating its Secret first), then looks again at once.
    mutating func resume() async -> Step {
        let client = backend.client
        let name = self.name
        do {
            // The runner that created it died before resuming it.
            if let job = try await backend.limited(deadline, { try await client.job(name) }) {
                try await backend.start(job, request: context.request, deadline: deadline)
            }
            started = true
            return .again
        } catch {
            logger.warning("cannot resume the Job", metadata: ["job": "\(name)", "error": "\(error)"])
            return .waiting
        }
    }

    /// The budget is spent and nothing explained it yet: one cleanup window (the API grace) for reading the log and
    /// deleting the Job; a report in the log still counts.
    mutating func cleanUpAfterBudget() async -> BackendOutcome {
        let cleanup = Deadline(budgetMs: Int(KubeBackend.apiGrace.milliseconds))
        let log = await backend.capture(name, within: cleanup.remaining)
        backend.keep(log, at: logPath, in: &result)
        await backend.delete(name, logger: logger, within: max(cleanup.remaining, .milliseconds(500)))
        if let report = backend.report(in: log, job: name), report.state != .running {
            result.take(report)
            return .ended(result)
        }
        return .ended(
            KubeBackend.failing(
                result,
                .timedOut(
                    .init(
                        subject: "k8s Job \(name)",
                        elapsedMs: deadline.elapsedMs,
                        budgetMs: deadline.budgetMs,
                        moment: .during("agent"),
                        detail: "; Job deleted"
                    )
                )
            )
        )
    }

    /// Starts the log mirror once a pod runs; returns why the pod will never run, if it will not.
    mutating func checkPods() async throws -> String? {
        let client = backend.client
        let name = self.name
        let pods = try await backend.limited(deadline) { try await client.pods(ofJob: name) }
        if !mirroring, let pod = pods.first(where: { ["Running", "Succeeded", "Failed"].contains($0.phase) }) {
            mirroring = true
            podRunning?.yield(pod.name)
        }
        return await backend.podFailure(name, pods: pods, created: created, clock: clock)
    }
}
