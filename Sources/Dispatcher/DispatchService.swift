import AgentProcess
import DispatchCore
import DispatchStore
import Execution
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Many dispatches in one long-lived process: admission (at most `maxConcurrent` executing, the rest persisted
/// as `queued` and started FIFO), a cancellation registry, restart recovery and draining shutdown.
///
/// As a `Service` it owns every task it starts: ``run()`` holds one task group, and each admitted dispatch (from
/// ``submit(_:)``, the queue, ``recover()``) reaches it through an `AsyncStream` and runs as a child of it, beside the
/// store's announcements, the shared queue's claimer and the backends' reconciliation. A graceful shutdown stops
/// admission and drains (or hands off, ``ShutdownMode``); the group ends when the last dispatch has. List it after
/// the HTTP server in a `ServiceGroup`, so the server still answers result and await queries while it drains.
package final class DispatchService: Service, Sendable {
    /// What a submission came to.
    package struct Submission: Sendable {
        package var status: DispatchStatus
        package var duplicate: Bool
        package var record: DispatchRecord
    }

    /// Why a cancel did not cancel.
    package enum CancelOutcome: Sendable {
        case cancelled(DispatchResult)
        case alreadyTerminal(DispatchResult)
        /// Asked of the replica that runs it, which has not ended it within the wait.
        case requested(DispatchResult)
        case unknown
    }

    /// A submission refused before anything was recorded.
    package struct Refused: Error, Sendable, CustomStringConvertible {
        package var description: String
    }

    private struct Running: Sendable {
        let token: CancelToken
        /// Run by a k8s Job, which a shutdown leaves running for the next `serve`.
        let byJob: Bool
        /// Its result, once its task ends.
        let end: RunEnd
        /// Set to cancel its task: by its token's cancel, or by a hand-off giving up on a run that did not let go.
        let interrupt = Latch()
    }

    /// One dispatch for ``run()``'s task group to start. A class: its tasks' frames and closures hold a reference,
    /// not a copy of the whole record, for as long as the run lasts.
    private final class Admission: Sendable {
        let record: DispatchRecord
        /// Taken over from a runner that is gone (``DispatchEngine/reattach(_:token:)``).
        let reattach: Bool
        let running: Running

        init(record: DispatchRecord, reattach: Bool, running: Running) {
            self.record = record
            self.reattach = reattach
            self.running = running
        }
    }

    private struct State {
        var running: [String: Running] = [:]
        var reserved = 0
        var queue: [DispatchRecord] = []
        var accepting = true
        /// Where peers reach this replica (``advertise(url:)``).
        var url: String?
    }

    package let engine: DispatchEngine
    package let maxConcurrent: Int
    private let logger: Logger
    private let state = Mutex(State())
    private let owner: RunnerOwner
    /// Signalled whenever a dispatch ends (the drain waits on it).
    private let drained = Wakeup()
    /// Dispatches to start, in ``run()``'s task group; finished when admission stops.
    private let admissions: AsyncStream<Admission>
    private let admit: AsyncStream<Admission>.Continuation
    /// Signalled when a slot may take a request of the shared queue (the claimer waits on it).
    private let claimWanted = Wakeup()

    /// How long running dispatches get to finish on graceful shutdown before they are cancelled.
    package let drainOnShutdown: Duration

    /// What a graceful shutdown does with running local runs (`serve --on-shutdown`).
    package enum ShutdownMode: String, Sendable, CaseIterable {
        /// Drain, then cancel what is left (the default).
        case cancel
        /// Leave them to the next `serve` on the same state dir, which adopts them from their monitors; stop at once.
        case handoff
    }

    /// What a graceful shutdown does with running local runs.
    package let onShutdown: ShutdownMode

    /// A service over `engine`, running at most `maxConcurrent` dispatches at once.
    package init(
        engine: DispatchEngine,
        maxConcurrent: Int,
        logger: Logger,
        drainOnShutdown: Duration = .seconds(10),
        onShutdown: ShutdownMode = .cancel
    ) {
        self.onShutdown = onShutdown
        self.drainOnShutdown = drainOnShutdown
        self.engine = engine
        // A serve holds a terminal result the store will not take until it does (a full disk), never dropping it.
        engine.held.begin()
        self.maxConcurrent = max(1, maxConcurrent)
        self.logger = logger
        self.owner = engine.serveOwner
        (admissions, admit) = AsyncStream.makeStream(of: Admission.self)
    }

    /// Executions in flight and requests waiting for a slot.
    package var counts: (running: Int, queued: Int) {
        state.withLock { ($0.running.count, $0.queue.count) }
    }

    /// Resolves what a previous process left: `running` requests whose runner is gone become `failed`
    /// (their surviving processes are killed); `queued` ones are queued again in their original order.
    package func recover() async throws {
        let resynced = try await engine.store.resyncInbox()
        if resynced > 0 { logger.notice("rewrote inbox files that lagged the store", metadata: ["count": "\(resynced)"]) }
        let rows = try await engine.store.nonTerminal()
        let stranded = rows.filter { $0.status == .running && ($0.owner?.isCurrentProcess == true || $0.ownerIsGone()) }
        // Adoptable runs first: each monitor waits one lease for its adopter, and ending the others (a patch export
        // each) must not eat into that.
        let adoptable = stranded.map(engine.canReattach)
        for (record, first) in zip(stranded, adoptable) where first { try await recoverRunning(record) }
        for (record, first) in zip(stranded, adoptable) where !first { try await recoverRunning(record) }
        // A shared queue stays in the store (every replica claims from it); the embedded store's is this process's.
        if !sharedQueue { state.withLock { $0.queue.append(contentsOf: rows.filter { $0.status == .queued }) } }
        let queued = counts.queued
        if queued > 0 { logger.info("recovered queued dispatches", metadata: ["count": "\(queued)"]) }
        pump()
    }

    /// Takes over a `running` row nobody vouches for: a k8s run is followed (its Job runs on), anything else is ended.
    private func recoverRunning(_ record: DispatchRecord) async throws {
        let running = state.withLock { $0.running[record.requestId] != nil }
        guard !running else { return }
        // A monitor this runner cannot adopt (a peer's, on its machine or another) still holds the run: the next
        // upkeep looks again, once the monitor's window is over.
        guard engine.canReattach(record) || !engine.heldByMonitor(record) else { return }
        // Compare-and-set from the owner we saw: if that owner renewed meanwhile, or another recoverer claimed the
        // row first, it is not ours to follow or end.
        guard let claimed = try await engine.store.claim(record.requestId, from: record.owner, to: owner) else { return }
        if engine.canReattach(claimed) {
            state.withLock { startLocked(claimed, in: &$0, reattach: true) }
        } else {
            _ = try await engine.abandon(claimed, reason: engine.abandonReason(record, owner: record.owner ?? owner))
        }
    }

    /// One pass of lease upkeep (``LeaseKeeper`` runs it every third of a lease): renews this process's leases, and
    /// recovers `running` rows whose owner stopped renewing (a `serve` that died on another host, a killed
    /// `dispatch run`). Leases are renewed through the drain too; others' rows are recovered only while accepting.
    package func upkeep() async throws {
        try await engine.store.renewLeases(of: owner)
        if let replica = owner.replica { try await engine.store.advertise(replica: replica, url: state.withLock { $0.url }) }
        // A backstop for missed announcements: a free slot looks for queued work, and cancels asked on another
        // replica for runs held here are acted on, every third of a lease.
        if sharedQueue {
            pump()
            for (id, reason) in try await engine.store.pendingCancels() { await cancelIfRunningHere(id, reason: reason) }
        }
        guard state.withLock({ $0.accepting }) else { return }
        for record in try await engine.store.nonTerminal() where record.status == .running && record.ownerIsGone() {
            logger.warning("recovering a dispatch whose runner stopped renewing its lease", metadata: ["request.id": "\(record.requestId)"])
            try await recoverRunning(record)
        }
    }

    /// Says where peers reach this replica (its listener, or `DISPATCH_REPLICA_URL`), now and at every upkeep: a
    /// replica asked for the logs or patch of a run held here proxies to it (CONTRACT §8).
    package func advertise(url: String?) async {
        state.withLock { $0.url = url }
        guard let replica = owner.replica else { return }
        do {
            try await engine.store.advertise(replica: replica, url: url)
        } catch {
            logger.warning("could not advertise this replica; the next lease upkeep tries again", metadata: ["error": "\(error)"])
        }
    }

    /// How often ``upkeep()`` should run: a third of a lease.
    package var upkeepPeriod: Duration { .milliseconds(Int64(max(1, engine.store.leaseDuration / 3) * 1000)) }

    /// Records a new request and starts or queues it; a known `requestId` starts nothing.
    package func submit(_ request: DispatchRequest) async throws -> Submission {
        let slot = state.withLock { state -> Bool? in
            guard state.accepting else { return nil }
            guard state.running.count + state.reserved < maxConcurrent, state.queue.isEmpty else { return false }
            state.reserved += 1
            return true
        }
        guard let slot else { throw Refused(description: "runner shutting down; not accepting new dispatches") }
        let outcome: StoreInsertOutcome
        do {
            outcome = try await engine.admit(request, status: slot ? .running : .queued, owner: owner)
        } catch {
            if slot { state.withLock { $0.reserved -= 1 } }
            throw error
        }
        switch outcome {
        case .existing(let record):
            if slot { state.withLock { $0.reserved -= 1 } }
            engine.metrics.deduplicated()
            return Submission(status: record.status, duplicate: true, record: record)
        case .inserted(let record):
            if slot {
                let started = state.withLock { state in
                    state.reserved -= 1
                    return state.accepting && startLocked(record, in: &state)
                }
                // Shutdown began while it was recorded: it never starts.
                if !started {
                    let result = try await engine.cancelUnstarted(record, reason: "runner shutting down")
                    return Submission(status: result.status, duplicate: false, record: try await engine.store.record(record.requestId) ?? record)
                }
            } else if !sharedQueue {
                state.withLock { $0.queue.append(record) }
                pump()
            }
            return Submission(status: record.status, duplicate: false, record: record)
        }
    }

    /// Cancels a running (group killed) or queued (never started) request.
    package func cancel(_ requestId: String, reason: String = "cancelled by request") async throws -> CancelOutcome {
        enum Found {
            case running(Running)
            case queued(DispatchRecord)
            case neither
        }
        let found = state.withLock { state -> Found in
            if let running = state.running[requestId] { return .running(running) }
            if let index = state.queue.firstIndex(where: { $0.requestId == requestId }) { return .queued(state.queue.remove(at: index)) }
            return .neither
        }
        switch found {
        case .running(let running):
            running.token.cancel(reason: reason)
            // `nil`: the caller gave up waiting (its task was cancelled).
            guard let result = await running.end.value() else {
                return try await engine.store.record(requestId).map { .requested($0.result) } ?? .unknown
            }
            return result.status == .cancelled ? .cancelled(result) : .alreadyTerminal(result)
        case .queued(let record):
            let result = try await engine.cancelUnstarted(record, reason: reason)
            return result.status == .cancelled ? .cancelled(result) : .alreadyTerminal(result)
        case .neither:
            guard var record = try await engine.store.record(requestId) else { return .unknown }
            if record.status.isTerminal { return .alreadyTerminal(record.result) }
            // Queued in the shared queue: cancelled only if no replica claims it first (compare-and-set); if one did, it
            // is running there now and the cancel goes to it.
            if record.status == .queued {
                if let cancelled = try await engine.cancelQueued(record, reason: reason) {
                    return cancelled.status == .cancelled ? .cancelled(cancelled) : .alreadyTerminal(cancelled)
                }
                guard let current = try await engine.store.record(requestId) else { return .unknown }
                if current.status.isTerminal { return .alreadyTerminal(current.result) }
                record = current
            }
            // Running on another replica: the cancel is recorded and announced; its owner ends it within its grace.
            if try await engine.store.requestCancel(requestId, reason: reason) {
                let wait = Duration.milliseconds(engine.configuration.killGraceMs) + .seconds(10)
                guard let ended = try await engine.awaitTerminal(requestId, timeout: wait), ended.status.isTerminal else {
                    return .requested(try await engine.store.record(requestId)?.result ?? record.result)
                }
                return ended.status == .cancelled ? .cancelled(ended.result) : .alreadyTerminal(ended.result)
            }
            // Running in another process (e.g. `dispatch run`): only its owner can stop it, unless it is dead.
            let resolved = try await engine.resolveIfAbandoned(record)
            return resolved.status.isTerminal ? .alreadyTerminal(resolved.result) : .unknown
        }
    }

    /// Cancels `requestId` if this process runs it (a cancel asked on another replica); otherwise nothing.
    private func cancelIfRunningHere(_ requestId: String, reason: String?) async {
        guard let running = state.withLock({ $0.running[requestId] }) else { return }
        var stated = reason
        if stated == nil { stated = (try? await engine.store.pendingCancels())?[requestId] }
        running.token.cancel(reason: stated ?? "cancelled by request")
    }

    /// Runs every admitted dispatch until graceful shutdown (or cancellation), then drains or hands off.
    package func run() async throws {
        await withDiscardingTaskGroup { group in
            // In the background: an unreachable API must not hold the service's start.
            group.addTask { await self.engine.reconcileBackends() }
            // Other replicas' results wake this one's waiters (PostgreSQL's LISTEN/NOTIFY), until the end.
            group.addTask {
                await self.engine.watchStore(
                    onQueued: { self.pump() },
                    onCancelRequested: { id in await self.cancelIfRunningHere(id, reason: nil) }
                )
            }
            if sharedQueue { group.addTask { await self.claimQueued() } }
            for backend in engine.allBackends { group.addTask { await backend.background() } }
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    for await admission in admissions {
                        group.addTask { await self.execute(admission) }
                    }
                } onGracefulShutdown: {
                    self.stopAccepting()
                }
            } onCancel: {
                // Cancelled rather than shut down (`serve`'s group shuts down gracefully even when a service fails, so
                // only a cancelled process gets here): what runs is cancelled with the group. As far as it can be told
                // in time, k8s runs — and in a hand-off every run — are let go of rather than ended.
                self.letGoOnCancel()
            }
            stopAccepting()
            if onShutdown == .handoff {
                await handOff()
            } else {
                await drain(for: drainOnShutdown)
                logger.info("dispatches drained")
            }
            group.cancelAll()
        }
        engine.notifier.wakeAll()
    }

    /// Stops admission: nothing new starts, queued requests stay queued for the next start, and the admissions
    /// stream ends (what it holds still starts).
    private func stopAccepting() {
        state.withLock { state in
            guard state.accepting else { return }
            state.accepting = false
            state.queue.removeAll()
            admit.finish()
        }
        claimWanted.signal()
    }

    /// Runs one admitted dispatch to its end: its token's cancel cancels its task (the supervision then ends its
    /// processes), and its result is kept for whoever cancelled it.
    private func execute(_ admission: Admission) async {
        let (token, end) = (admission.running.token, admission.running.end)
        let engine = self.engine
        let interrupt = admission.running.interrupt
        // A cancel (now or already) interrupts the run.
        let key = token.stopped.observe { interrupt.set() }
        defer { token.stopped.ignore(key) }
        // The run, and beside it a wait for its interrupt: an interrupt before the run ended throws, which cancels
        // the run (a discarding group cancels the rest when a child throws); the run's end sets the interrupt too.
        try? await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                end.finish(await engine.run(admission.record, reattach: admission.reattach, token: token))
                interrupt.set()
            }
            group.addTask {
                await interrupt.wait()
                if !end.isFinished { throw CancellationError() }
            }
        }
        finished(admission.record.requestId)
    }

    /// Leaves every running dispatch as it is, for the next `serve` on this state dir: local runs held by monitors
    /// are adopted by it, k8s runs followed; what no monitor holds (a checkout, a verification, an agent without
    /// isolation) it ends as lost. Queued requests stay queued. Each run's supervision lets go at once (its token is
    /// detached); what cannot let go by itself within a moment (a checkout, an export under way) is cancelled, its
    /// result unwritten. Rows keep their owner, whose death the next `serve` sees.
    func handOff() async {
        let running = state.withLock { Array($0.running.values) }
        for item in running { item.token.detach() }
        logger.notice(
            "handing running dispatches off to the next serve",
            metadata: ["running": "\(running.count)", "heldByMonitors": "\(engine.runsOutliveRunner)"]
        )
        engine.held.stop()
        await waitUntilIdle(until: .now + Self.letGoWindow)
        // What did not let go by itself (a checkout, an export under way) is cancelled, its result unwritten; a k8s
        // run is never cancelled (its Job would be deleted): it lets go once its step ends.
        for item in state.withLock({ Array($0.running.values) }) where !item.byJob { item.interrupt.set() }
        await waitUntilIdle(until: nil)
    }

    /// A cancellation of ``run()``: k8s runs are let go of (a shutdown never cancels them), and every run in a hand-off.
    private func letGoOnCancel() {
        for item in state.withLock({ Array($0.running.values) }) where item.byJob || onShutdown == .handoff { item.token.detach() }
    }

    /// How long a hand-off waits for runs to let go before it cancels what is left.
    static let letGoWindow: Duration = .seconds(2)

    /// Lets running dispatches finish for `drain`, then cancels the rest ("runner shutting down") and waits for them.
    private func drain(for drain: Duration) async {
        let running = state.withLock { Array($0.running.values) }
        logger.info("draining", metadata: ["running": "\(running.count)", "drainMs": "\(drain.milliseconds)"])
        // k8s runs are let go at once, not drained: their Jobs run on and the next serve follows them.
        for item in running where item.byJob { item.token.detach() }
        await waitUntilIdle(until: .now + drain)
        let left = state.withLock { Array($0.running.values) }
        // A shutdown never cancels a k8s run (CONTRACT §3); those were let go above.
        for item in left where !item.byJob { item.token.cancel(reason: "runner shutting down") }
        // Results still held (the store takes no writes) are given up now: their rows go to the next serve.
        if engine.held.count > 0 { logger.error("shutting down with results the store would not take", metadata: ["held": "\(engine.held.count)"]) }
        engine.held.stop()
        await waitUntilIdle(until: nil)
    }

    /// Waits until no dispatch runs, `end` passes, or the task is cancelled; woken by each dispatch that ends.
    private func waitUntilIdle(until end: ContinuousClock.Instant?) async {
        while counts.running > 0, !Task.isCancelled {
            guard let end else {
                await drained.wait()
                continue
            }
            guard ContinuousClock.now < end else { return }
            await drained.wait(until: end)
        }
    }

    /// Whether the queue is the store's, shared by every replica on it (PostgreSQL), rather than this process's.
    private var sharedQueue: Bool { engine.store.announcesCommits }

    /// Starts queued requests while slots are free.
    private func pump() {
        if sharedQueue { return claimWanted.signal() }
        state.withLock { state in
            while state.accepting, state.running.count + state.reserved < maxConcurrent, !state.queue.isEmpty {
                startLocked(state.queue.removeFirst(), in: &state)
            }
        }
    }

    /// The shared queue's claimer, for as long as ``run()`` runs: whenever a slot may be free (``pump()``), takes
    /// the oldest queued request of any replica from the store while slots are free (each exactly once: the store's
    /// claim skips rows another replica holds). A call while it claims is kept for its next look, so no announcement
    /// falls between its last look and its wait.
    private func claimQueued() async {
        while !Task.isCancelled, state.withLock({ $0.accepting }) {
            await claimWanted.wait()
            while !Task.isCancelled, await claimOne() {}
        }
    }

    /// Claims one queued request of the shared queue into a free slot; whether it started one. A row claimed as the
    /// service stops accepting goes back to the queue for another replica.
    private func claimOne() async -> Bool {
        let slot = state.withLock { state -> Bool in
            guard state.accepting, state.running.count + state.reserved < maxConcurrent else { return false }
            state.reserved += 1
            return true
        }
        guard slot else { return false }
        var claimed: DispatchRecord?
        do {
            claimed = try await engine.store.claimNextQueued(owner: owner, startedAt: ISO8601.string(Date()))
        } catch {
            logger.error("cannot claim a queued dispatch", metadata: ["error": "\(error)"])
        }
        let started = state.withLock { state -> Bool in
            state.reserved -= 1
            guard let claimed, state.accepting else { return false }
            return startLocked(claimed, in: &state)
        }
        if let claimed, !started {
            let (store, owner) = (engine.store, owner)
            await uncancelled { try? await store.unclaim(claimed, owner: owner) }
        }
        return started
    }

    /// Registers `record` as running and hands it to ``run()``'s group; `false` once admission has stopped.
    @discardableResult
    private func startLocked(_ record: DispatchRecord, in state: inout State, reattach: Bool = false) -> Bool {
        let running = Running(token: CancelToken(), byJob: engine.isRunByJob(record), end: RunEnd())
        guard case .enqueued = admit.yield(Admission(record: record, reattach: reattach, running: running)) else { return false }
        state.running[record.requestId] = running
        return true
    }

    @inline(never)
    private func finished(_ requestId: String) {
        state.withLock { _ = $0.running.removeValue(forKey: requestId) }
        drained.signal()
        pump()
    }
}

/// A dispatch's result, once its task has ended.
private final class RunEnd: Sendable {
    private let ended = Latch()
    private let result = Mutex<DispatchResult?>(nil)

    func finish(_ value: DispatchResult) {
        result.withLock { $0 = value }
        ended.set()
    }

    var isFinished: Bool { ended.isSet }

    /// The result, once there is one; `nil` when the calling task is cancelled first.
    func value() async -> DispatchResult? {
        await ended.wait()
        return result.withLock { $0 }
    }
}

extension DispatchEngine {
    /// Ends a request still `queued` in a shared queue as `cancelled`, unless a replica claims it first; `nil` then.
    package func cancelQueued(_ record: DispatchRecord, reason: String) async throws -> DispatchResult? {
        var result = record.result
        result.cancelBeforeStart(reason: reason)
        guard let stored = try await store.cancelQueued(result) else { return nil }
        notifier.publish(stored.result)
        metrics.finished(stored.result, failure: nil)
        traces.ended(stored.result)
        return stored.result
    }

    /// Ends a request that never started (queued) as `cancelled`.
    package func cancelUnstarted(_ record: DispatchRecord, reason: String) async throws -> DispatchResult {
        var result = record.result
        result.cancelBeforeStart(reason: reason)
        let stored = await persist(result, owner: nil, logger: logger)
        traces.ended(stored)
        return stored
    }
}

/// What became of a job-runner's report.
package enum CallbackOutcome: Sendable {
    /// No request has that id.
    case unknown
    /// The request is not run by a k8s Job (host mode, local sandbox, another Job): unchanged.
    case notRunByJob(DispatchResult, reason: String)
    /// The request was already terminal (terminal is final): unchanged.
    case ignored(DispatchResult)
    /// Merged; the stored result.
    case applied(DispatchResult)

    /// Whether a report for a k8s-run request was ignored (`nil` when it was refused or the id is unknown).
    package var ignored: Bool? {
        switch self {
        case .applied: false
        case .ignored: true
        case .unknown, .notRunByJob: nil
        }
    }
}

extension DispatchEngine {
    /// Whether `record` is executed by a k8s Job (only those take callbacks).
    /// Decided by what was recorded at admission, not by today's default backend.
    func isRunByJob(_ record: DispatchRecord) -> Bool {
        record.request.executionMode == .sandbox && (record.request.sandboxBackend ?? record.result.sandboxBackend) == .k8s
    }

    /// Merges a job-runner's report into the request's result: only for a request a k8s Job runs, and only while it
    /// is not terminal.
    package func applyCallback(_ report: SandboxExecutionResult) async throws -> CallbackOutcome {
        guard let record = try await store.record(report.requestId) else { return .unknown }
        guard isRunByJob(record) else {
            return .notRunByJob(record.result, reason: "request \(report.requestId) is not run by a k8s Job; callback refused")
        }
        if let named = report.job?.name, !named.isEmpty, let recorded = record.result.job?.name, named != recorded {
            return .notRunByJob(record.result, reason: "request \(report.requestId) is run by Job \(recorded), not \(named); callback refused")
        }
        if record.status.isTerminal { return .ignored(record.result) }
        var result = record.result
        result.take(report)
        result.sandboxBackend = result.sandboxBackend ?? .k8s
        result.updatedAt = ISO8601.string(Date())
        if result.status.isTerminal {
            result.completedAt = report.completedAt ?? result.updatedAt
            result.durationMs = report.durationMs ?? result.durationMs
        }
        let stored = await persist(result, owner: nil, logger: logger)
        // A terminal result committed in between (by the controller or a cancel) wins; the report was then ignored.
        return stored != result && stored.status.isTerminal ? .ignored(stored) : .applied(stored)
    }
}
