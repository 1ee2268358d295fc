import AgentProcess
import DispatchCore
import DispatchStore
import Execution
import Foundation
import Logging
import Tracing

/// The lifecycle of one dispatch: dedupe → running → backend → terminal result.
///
/// Shared by `dispatch run` (one request, in-process), `dispatch serve` (many, admitted by ``DispatchService``) and
/// `dispatch job-runner`. How a request runs is its backend's business (``ExecutionBackend``); the engine only
/// picks the backend, records progress and writes the one terminal result.
package final class DispatchEngine: Sendable {
    package let configuration: DispatchConfiguration
    package let store: any DispatchStore
    let logger: Logger
    /// Wakes long-poll waiters when a terminal result is committed.
    package let notifier = ResultNotifier()
    /// Counters for `GET /metrics`.
    package let metrics = DispatchMetrics()
    /// Each dispatch's trace, while it is open in this process (CONTRACT §11).
    package let traces = DispatchTraces()
    /// Terminal results waiting for the store (serve only).
    package let held = HeldResults()
    let backends: Backends

    /// The backends a runner has, by where a request runs.
    package struct Backends: Sendable {
        /// `executionMode: host`.
        package var host: any ExecutionBackend
        /// `executionMode: sandbox`, backend `local`.
        package var localSandbox: any ExecutionBackend
        /// `executionMode: sandbox`, backend `k8s`; `nil` when this runner has no cluster.
        package var k8s: (any ExecutionBackend)?
        /// Whether the local backends' agent attempts are held by monitors that outlive the runner.
        package var localRunsOutliveRunner = false
        /// How the local backends limit each run's resources (`cgroup-v1`, `rlimit`, `none`).
        package var limits = "none"
        /// Who local agents run as (CONTRACT §7).
        package var agentUsers = AgentUserPolicy.runner

        /// The backends of one runner.
        package init(host: any ExecutionBackend, localSandbox: any ExecutionBackend, k8s: (any ExecutionBackend)? = nil) {
            self.host = host
            self.localSandbox = localSandbox
            self.k8s = k8s
        }
    }

    /// How often a waiter re-reads a request it does not own.
    static let pollInterval: Duration = .milliseconds(50)

    /// An engine over `store` running requests on `backends`.
    package init(configuration: DispatchConfiguration, store: any DispatchStore, logger: Logger, backends: Backends) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.backends = backends
    }

    /// The backend a request runs on: the one recorded at admission (`recorded`), else the request's or the default
    /// (`nil`: k8s, and this runner has no cluster). A later change of the default never moves a request.
    func backend(for request: DispatchRequest, recorded: SandboxBackend? = nil) -> (any ExecutionBackend)? {
        switch request.executionMode {
        case .host: backends.host
        case .sandbox: (recorded ?? request.sandboxBackend ?? configuration.defaultBackend) == .k8s ? backends.k8s : backends.localSandbox
        }
    }

    /// The backend of a stored record.
    func backend(for record: DispatchRecord) -> (any ExecutionBackend)? {
        backend(for: record.request, recorded: record.result.sandboxBackend)
    }

    /// Records `request` in `status` (`running` or `queued`) unless its id is known: the atomic dedupe.
    /// A request its backend refuses (a `cwd` inside the runner's hidden parts) throws its ``RequestValidationError``
    /// and records nothing.
    package func admit(_ request: DispatchRequest, status: DispatchStatus, owner: RunnerOwner) async throws -> StoreInsertOutcome {
        let fresh = !traces.isOpen(request.requestId)
        let admission = startSpan("admission", context: traces.context(request))
        defer { admission.end() }
        if let refusal = backend(for: request)?.refusal(of: request) {
            admission.setStatus(SpanStatus(code: .error, message: refusal.description))
            if fresh { traces.abandoned(request.requestId, why: "refused") }
            throw refusal
        }
        var result = DispatchResult(request: request, status: status)
        // The backend is fixed at admission: a later change of the default does not move a request.
        if request.executionMode == .sandbox { result.sandboxBackend = request.sandboxBackend ?? configuration.defaultBackend }
        if status == .running { result.startedAt = result.updatedAt }
        let outcome: StoreInsertOutcome
        do {
            outcome = try await store.insert(result, request: request, owner: owner)
        } catch {
            if fresh { traces.abandoned(request.requestId, why: "not stored") }
            throw error
        }
        switch outcome {
        case .inserted: if status == .queued { traces.queued(request) }
        case .existing: if fresh { traces.abandoned(request.requestId, why: "duplicate") }
        }
        return outcome
    }

    /// Runs `request` to a terminal result in this process, or — when another runner already has its id —
    /// waits for that runner's result. Returns the result and whether it was a duplicate.
    package func runOnce(_ request: DispatchRequest, token: CancelToken) async throws -> (result: DispatchResult, duplicate: Bool) {
        switch try await admit(request, status: .running, owner: .current(kind: .run)) {
        case .inserted(let record):
            // This process vouches for its row while it runs; if it dies, the lease runs out and anyone recovers it.
            let store = self.store
            let owner = record.owner
            // Beside the run, as `serve`'s service would: the lease renewal and the backend's background work (the
            // k8s Job watch); both end with the run.
            let jobs = record.result.sandboxBackend == .k8s ? backends.k8s : nil
            let companions: @Sendable () async -> Void = {
                await withDiscardingTaskGroup { group in
                    if let owner { group.addTask { await Self.renewLeases(of: owner, in: store) } }
                    if let jobs { group.addTask { await jobs.background() } }
                }
            }
            let result = await alongside(companions) { await execute(record, token: token) }
            // Report only what is committed: a terminal result the store would not take is not a result.
            // Read outside this task's cancellation: a cancelled dispatch still reports its stored `cancelled`.
            guard let stored = await committedRecord(record.requestId), stored.status.isTerminal else {
                throw DispatchEngineError(
                    "the \(result.status.rawValue) result of \(record.requestId) could not be stored within "
                        + "\(configuration.storeRetrySeconds)s; not reporting it (the next process that looks at it reconciles from the store)"
                )
            }
            return (stored.result, false)
        case .existing(let record):
            let final = try await awaitTerminal(record.requestId, timeout: nil, backstop: Self.pollInterval)
            return (final?.result ?? record.result, true)
        }
    }

    /// Renews `owner`'s leases every third of a lease (a timer on the process runtime) until cancelled.
    static func renewLeases(of owner: RunnerOwner, in store: any DispatchStore) async {
        while !Task.isCancelled {
            await ProcessRuntime.shared.sleep(for: .seconds(max(1, store.leaseDuration / 3)))
            if !Task.isCancelled { _ = try? await store.renewLeases(of: owner) }
        }
    }

    /// Executes an admitted record to its terminal result and stores it. Never throws: every path ends terminal.
    package func execute(_ record: DispatchRecord, token: CancelToken) async -> DispatchResult {
        // Kept small: this frame lives as long as the run does (a held run costs what its waiting frames cost).
        // The start's store work in a task of its own, whose memory is given back when it ends.
        switch await inChildTask({ await self.start(record) }) {
        case .failure(let ended): return ended.result
        case .success(let started):
            return await run(
                started.request,
                on: started.backend,
                known: started.result,
                deadline: started.deadline,
                token: token,
                logger: started.logger,
                attach: false
            )
        }
    }

    /// What a dispatch starts with.
    struct Started: Sendable {
        var request: DispatchRequest
        var backend: any ExecutionBackend
        var result: DispatchResult
        var deadline: Deadline
        var logger: Logger
    }

    /// A dispatch that ended before it started (claimed by another runner, no backend for it), with its result.
    struct EndedEarly: Error, Sendable {
        var result: DispatchResult
    }

    /// Claims a queued record, stamps its start and picks its backend; or ends it.
    @inline(never)
    func start(_ record: DispatchRecord) async -> Result<Started, EndedEarly> {
        let request = record.request
        let logger = dispatchLogger(request)
        let deadline = Deadline(budgetMs: request.timeoutMs)
        var result = record.result
        let now = ISO8601.string(Date())
        result.startedAt = record.status == .running ? (result.startedAt ?? now) : now
        if record.status != .running {
            // queued → running only by its claimer: a row cancelled (or taken) meanwhile is not run.
            let store = self.store
            let id = record.requestId
            let previous = record.owner
            let owner = serveOwner
            let claimed = try? await outsideCancellation { try await store.claim(id, from: previous, to: owner, startedAt: now) }
            guard let claimed = claimed ?? nil else {
                logger.notice("not starting a dispatch another runner ended or took meanwhile")
                return .failure(EndedEarly(result: await committedRecord(id)?.result ?? record.result))
            }
            result = claimed.result
        }
        traces.started(request.requestId)
        logger.info("dispatch started", metadata: ["budgetMs": "\(deadline.budgetMs)"])
        if request.executionMode == .sandbox {
            result.sandboxBackend = result.sandboxBackend ?? request.sandboxBackend ?? configuration.defaultBackend
        }
        guard let backend = backend(for: request, recorded: result.sandboxBackend) else {
            result.fail(.message("sandbox backend k8s is not configured in this runner (run it in a cluster or set KUBECONFIG)"))
            return .failure(EndedEarly(result: await finish(result, deadline: deadline, logger: logger)))
        }
        return .success(Started(request: request, backend: backend, result: result, deadline: deadline, logger: logger))
    }

    /// Runs (or, with `attach`, follows) one request on `backend` and records what it came to.
    @inline(never)
    private func run(
        _ request: DispatchRequest,
        on backend: any ExecutionBackend,
        known: DispatchResult,
        deadline: Deadline,
        token: CancelToken,
        logger: Logger,
        attach: Bool
    ) async -> DispatchResult {
        let context = BackendContext(
            request: request,
            known: known,
            deadline: deadline,
            cancellation: token,
            logger: logger
        ) { running in _ = await self.persist(running, owner: nil, logger: logger) }
        // A run that outlives its runner also reports by its own path (a Job's callback): stop following once
        // that result is stored.
        // The backend's spans (checkout, attempts, verification, export, the Job) are the dispatch's root's children.
        let outcome: BackendOutcome = await ServiceContext.withValue(traces.context(request)) {
            if backend.followsAfterRestart {
                let settle: @Sendable () async -> Void = { await self.settleWhenStoredElsewhere(known.requestId, token: token) }
                return await alongside(settle) { attach ? await backend.attach(context) : await backend.run(context) }
            }
            return attach ? await backend.attach(context) : await backend.run(context)
        }
        return await record(outcome, known: known, deadline: deadline, token: token, logger: logger)
    }

    /// Stores what a run came to (its own frame: the run's, which waits as long as the agent runs, stays small).
    @inline(never)
    private func record(
        _ outcome: BackendOutcome,
        known: DispatchResult,
        deadline: Deadline,
        token: CancelToken,
        logger: Logger
    ) async -> DispatchResult {
        // A hand-off that had to cancel what did not let go by itself (a checkout, an export): what that cut short
        // says nothing true about the run, which the next runner ends or adopts.
        if token.isDetached, Task.isCancelled, case .ended = outcome { return known }
        switch outcome {
        case .ended(let result, let processesKilled, let afterRecording):
            metrics.killed(processesKilled)
            // What the agent left is swept once the result is stored — or before it is held: a leftover that fills the
            // disk must not keep its own result out.
            let sweep = RunOnce(afterRecording)
            let stored = await finish(result, deadline: deadline, logger: logger) { self.metrics.killed(await sweep.run()) }
            metrics.killed(await sweep.run())
            return stored
        case .settledElsewhere:
            let settled = await committedRecord(known.requestId)?.result ?? known
            traces.ended(settled)
            return settled
        case .letGo(let result):
            traces.ended(result, outcome: "handed off")
            return result
        }
    }

    /// The logger of one dispatch: `request.id`, `tool`, `mode` and `backend` on every line.
    @inline(never)
    func dispatchLogger(_ request: DispatchRequest) -> Logger {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(request.requestId)"
        logger[metadataKey: "tool"] = "\(request.tool.rawValue)"
        logger[metadataKey: "mode"] = "\(request.executionMode.rawValue)"
        if request.executionMode == .sandbox {
            logger[metadataKey: "backend"] = "\((request.sandboxBackend ?? configuration.defaultBackend).rawValue)"
        }
        return logger
    }

    /// Settles `token` once a terminal result of `requestId` is stored by another path: woken by this process's
    /// notifier (the callback route), and reading the store every second for writes by other processes.
    private func settleWhenStoredElsewhere(_ requestId: String, token: CancelToken) async {
        while !Task.isCancelled {
            // A subscription answers once: subscribe, then read (a result stored in between is seen), then wait.
            let subscription = notifier.subscribe(requestId)
            if let record = try? await store.record(requestId), record.status.isTerminal {
                subscription.cancel()
                return token.settle()
            }
            if await subscription.value(timeout: .seconds(1)) != nil { return token.settle() }
        }
    }

    /// Delivers other processes' terminal commits to this process's waiters, until its task is cancelled: each
    /// announced commit is read and published; after a `.resync` every request someone waits for is read again.
    /// Returns at once when the store announces nothing (waiters then read the store themselves).
    /// `onQueued` is called for every request stored queued anywhere, and after a `.resync` (a slot may take it).
    package func watchStore(
        onQueued: @Sendable () -> Void = {},
        onCancelRequested: @Sendable (String) async -> Void = { _ in }
    ) async {
        guard store.announcesCommits else { return }
        await store.watchEvents { event in
            let ids: [String]
            switch event {
            case .committed(let requestId): ids = [requestId]
            case .queued:
                onQueued()
                return
            case .cancelRequested(let requestId):
                await onCancelRequested(requestId)
                return
            case .resync:
                onQueued()
                ids = notifier.waitingIds
            }
            for id in ids {
                if let record = try? await store.record(id), record.status.isTerminal { notifier.publish(record.result) }
            }
        }
    }

    /// Whether local runs outlive this runner (their attempts are held by monitors).
    package var runsOutliveRunner: Bool { backends.localRunsOutliveRunner }

    /// This process as the `serve` that owns its rows — one value wherever it is written, since leases are renewed
    /// and rows claimed by comparing the stored owner exactly.
    package var serveOwner: RunnerOwner {
        var owner = RunnerOwner.current(kind: .serve)
        owner.monitors = runsOutliveRunner ? true : nil
        return owner
    }

    /// How each run's resources are limited (`cgroup-v1`, `rlimit`, `none`).
    package var limitsMechanism: String { backends.limits }

    /// Who local agents run as (``AgentUserPolicy``).
    package var agentUsers: AgentUserPolicy { backends.agentUsers }

    /// A local run is adopted when its attempt's monitor lives or recorded the agent's end (CONTRACT §7).
    package func canReattach(_ record: DispatchRecord) -> Bool {
        backend(for: record)?.canAttach(record.result) ?? false
    }

    /// Whether a local run's monitor still vouches for it although its runner is gone: the monitor lives, or it
    /// recorded the agent's end less than a lease ago (a `serve` starting now still collects it). No reader ends
    /// such a run; only a `serve` adopting it, or the monitor itself.
    func heldByMonitor(_ record: DispatchRecord, now: Date = Date()) -> Bool {
        if heldOnAnotherMachine(record, now: now) { return true }
        switch AgentPhase.monitorState(of: record.result) {
        case .alive:
            return true
        case .ended(_, let ended):
            // Held for a serve to collect until the run's budget is over, and at least one lease after the end: a
            // reader ending it then would throw the agent's real result away.
            guard ended.ending != "runnerLost" else { return false }
            let nowMs = Int64(now.timeIntervalSince1970 * 1000)
            let leaseMs = Int64(configuration.leaseSeconds) * 1000
            let startedMs = record.result.startedAt.flatMap(ISO8601.date).map { Int64($0.timeIntervalSince1970 * 1000) } ?? ended.startedAtMs
            return nowMs < max(ended.endedAtMs + leaseMs, startedMs + Int64(record.request.timeoutMs) + leaseMs)
        case .gone, .none:
            return false
        }
    }

    /// A local run of a `serve` on another machine whose runs outlive it may be held by a monitor there, whose files
    /// this runner cannot see (CONTRACT §8): it waits for a `serve` on its machine for one lease after its runner's lease expired, then
    /// ends the agent within the kill grace. Until then no peer ends the row.
    func heldOnAnotherMachine(_ record: DispatchRecord, now: Date) -> Bool {
        guard let owner = record.owner, owner.kind == .serve, owner.monitors == true, !owner.isOnThisMachine,
            record.result.sandboxBackend != .k8s,
            let lease = record.leaseExpiresAt
        else { return false }
        let monitorWindow = TimeInterval(configuration.leaseSeconds) + Double(configuration.killGraceMs + AgentPhase.monitorSlackMs) / 1000
        return now < lease.addingTimeInterval(monitorWindow)
    }

    /// Why a run whose runner is gone ends without its result: its monitor ended it unadopted, or it is lost. With
    /// replicas, the words name the replica that stopped renewing its lease.
    func abandonReason(_ record: DispatchRecord, owner: RunnerOwner) -> String {
        let monitorEnded: Bool
        if case .ended(_, let ended) = AgentPhase.monitorState(of: record.result), ended.ending == "runnerLost" {
            monitorEnded = true
        } else {
            monitorEnded = false
        }
        let unadopted = "no runner adopted the run within its lease (\(configuration.leaseSeconds)s); its monitor ended the agent"
        // A peer's words (CONTRACT §8); a replica restarted on its own state dir says what a restart says (§7).
        if store.kind == "postgres", owner.kind == .serve, let replica = owner.replica, replica != ReplicaName.current {
            return "runner lost: replica \(replica) stopped renewing its lease" + (monitorEnded ? "; \(unadopted)" : "")
        }
        if monitorEnded { return "runner lost: \(unadopted)" }
        return owner.kind == .serve || owner.kind == .recover
            ? AgentRunner.abandonedReason : "runner exited while running (dispatch \(owner.kind) pid \(owner.pid) is gone)"
    }

    /// ``reattach(_:token:)`` or ``execute(_:token:)``, one call for a caller whose frame lives as long as the run.
    @inline(never)
    package func run(_ record: DispatchRecord, reattach: Bool, token: CancelToken) async -> DispatchResult {
        reattach ? await self.reattach(record, token: token) : await execute(record, token: token)
    }

    /// Follows a run a previous process started to its terminal result, within what is left of its budget.
    @inline(never)
    package func reattach(_ record: DispatchRecord, token: CancelToken) async -> DispatchResult {
        let logger = dispatchLogger(record.request)
        let started = record.result.startedAt.flatMap(ISO8601.date) ?? Date()
        let elapsedMs = max(0, Int(Date().timeIntervalSince(started) * 1000))
        let deadline = Deadline(budgetMs: record.request.timeoutMs, start: .now - .milliseconds(elapsedMs))
        guard let backend = backend(for: record), backend.canAttach(record.result) else {
            // Its monitor went away between the look and now: the run is lost after all.
            let owner = record.owner ?? .current(kind: .recover)
            return (try? await abandon(record, reason: abandonReason(record, owner: owner)))?.result ?? record.result
        }
        return await run(record.request, on: backend, known: record.result, deadline: deadline, token: token, logger: logger, attach: true)
    }

    /// After a restart: lets every backend clean up what it left running for requests already terminal.
    package func reconcileBackends() async {
        let store = self.store
        let isTerminal: @Sendable (String) async -> Bool = { id in (try? await store.record(id))?.status.isTerminal ?? false }
        for backend in allBackends { await backend.reconcile(isTerminal: isTerminal, logger: logger) }
    }

    /// Every backend of this runner.
    package var allBackends: [any ExecutionBackend] { [backends.host, backends.localSandbox] + (backends.k8s.map { [$0] } ?? []) }

    /// Stamps and stores a terminal result; returns what is stored (an earlier terminal result wins).
    @inline(never)
    func finish(
        _ result: DispatchResult,
        deadline: Deadline,
        logger: Logger,
        beforeHolding: (@Sendable () async -> Void)? = nil
    ) async -> DispatchResult {
        var result = result
        if !result.status.isTerminal {
            result.status = .failed
            result.error = result.error ?? "dispatch ended without a terminal status"
        }
        let now = Date()
        result.completedAt = ISO8601.string(now)
        result.updatedAt = result.completedAt!
        result.durationMs = deadline.elapsedMs
        let stored = await persist(result, owner: nil, logger: logger, beforeHolding: beforeHolding)
        traces.ended(stored)
        logger.info(
            "dispatch finished",
            metadata: [
                "status": "\(stored.status.rawValue)", "durationMs": "\(stored.durationMs ?? -1)", "error": "\(stored.error ?? "")",
            ]
        )
        return stored
    }

    /// Stores `result` outside any task cancellation (a cancelled dispatch must still write `cancelled`).
    /// A terminal write is retried with backoff for ``storeRetryWindow`` — and, while ``held`` holds (serve), past it
    /// until it commits (`beforeHolding` runs once when it starts to be held). Returns what the store holds
    /// afterwards: never a result the store did not take (on a lasting failure, the row as last committed, or
    /// `result` when even that cannot be read; `runOnce` then refuses to report it).
    @inline(never)
    func persist(
        _ result: DispatchResult,
        owner: RunnerOwner?,
        logger: Logger,
        beforeHolding: (@Sendable () async -> Void)? = nil
    ) async -> DispatchResult {
        let store = self.store
        let held = self.held
        let window = result.status.isTerminal ? storeRetryWindow : .zero
        let write = { @Sendable () async throws -> StoreUpdateOutcome in
            let clock = ContinuousClock()
            let end = clock.now + window
            var delay: Duration = .milliseconds(50)
            var holding = false
            defer { if holding { held.release(result.requestId) } }
            while true {
                do {
                    let outcome = try await store.update(result, owner: owner)
                    if holding { logger.notice("stored the held result", metadata: ["status": "\(result.status.rawValue)"]) }
                    return outcome
                } catch let error as DispatchStoreError where error.code == .notFound || error.code == .corruptRecord {
                    throw error
                } catch {
                    if clock.now + delay >= end {
                        guard result.status.isTerminal, held.isHolding else { throw error }
                        if !holding {
                            holding = true
                            held.hold(result)
                            logger.error(
                                "cannot store the result; holding it and writing it again until the store takes it",
                                metadata: ["error": "\(error)", "status": "\(result.status.rawValue)"]
                            )
                            await beforeHolding?()
                        }
                    }
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(1))
                }
            }
        }
        // What follows the write is in helpers of their own: this frame is part of every run's deepest moment (the
        // `running` write as an attempt starts), and a task keeps the memory of its deepest moment while it lives.
        do {
            return published(try await outsideCancellation(write), failure: result.failure)
        } catch {
            return await notStored(result, error: error, logger: logger)
        }
    }

    /// The stored result of a write; a terminal one is announced and counted.
    @inline(never)
    private func published(_ outcome: StoreUpdateOutcome, failure: DispatchFailure?) -> DispatchResult {
        if case .updated(let record) = outcome, record.status.isTerminal {
            notifier.publish(record.result)
            metrics.finished(record.result, failure: failure)
        }
        return outcome.record.result
    }

    /// What is stored after a write that failed for good.
    @inline(never)
    private func notStored(_ result: DispatchResult, error: any Error, logger: Logger) async -> DispatchResult {
        logger.error("cannot store the result", metadata: ["error": "\(error)", "status": "\(result.status.rawValue)"])
        return await committedRecord(result.requestId)?.result ?? result
    }

    /// Runs a store operation outside the calling task's cancellation: GRDB's async calls throw once their task is
    /// cancelled, and a cancelled dispatch must still write and read its own row.
    func outsideCancellation<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await uncancelled(operation)
    }

    /// The row as committed, read outside cancellation; `nil` when it cannot be read.
    @inline(never)
    func committedRecord(_ requestId: String) async -> DispatchRecord? {
        let store = self.store
        return (try? await outsideCancellation { try await store.record(requestId) }) ?? nil
    }

    /// How long a terminal write is retried (`DISPATCH_STORE_RETRY_SECONDS`, default 10).
    var storeRetryWindow: Duration { .milliseconds(Int64(configuration.storeRetrySeconds * 1000)) }

    /// Waits until `requestId` is terminal: the one "wait until terminal" of the runner (the await route, the CLI,
    /// cancel, a duplicate `dispatch run`). A result this process commits wakes it at once (``ResultNotifier``), and so
    /// do other replicas' where a store watch publishes them here (serve on PostgreSQL); a request another process
    /// runs is read again at least every `backstop`, and resolved as failed if its runner died. `nil` timeout waits indefinitely; returns the record as last seen — early when
    /// the notifier is woken for shutdown.
    package func awaitTerminal(_ requestId: String, timeout: Duration?, backstop: Duration = .seconds(1)) async throws -> DispatchRecord? {
        let clock = ContinuousClock()
        let end = timeout.map { clock.now + $0 }
        var lastOwnerCheck = clock.now - .seconds(1)
        while true {
            // Subscribe, then read: a result committed in between is kept by the subscription.
            let subscription = notifier.subscribe(requestId)
            defer { subscription.cancel() }
            guard var record = try await store.record(requestId) else { return nil }
            if !record.status.isTerminal, clock.now - lastOwnerCheck >= .milliseconds(500) {
                lastOwnerCheck = clock.now
                record = try await resolveIfAbandoned(record)
            }
            if record.status.isTerminal || Task.isCancelled || end.map({ clock.now >= $0 }) == true { return record }
            // Run here: its result wakes the notifier. Run elsewhere: read again every `backstop` (also to see its
            // runner die) — sooner when a store watch (serve on PostgreSQL) publishes its commit here.
            let local = record.owner?.isCurrentProcess == true
            var slice = end.map { $0 - clock.now } ?? .seconds(3600)
            if !local { slice = min(slice, backstop) }
            let waited = clock.now
            let published = await subscription.value(timeout: max(slice, .zero))
            // The committed result itself (what the notifier publishes is only ever committed): no second read.
            if let published, published.status.isTerminal {
                record.result = published
                return record
            }
            if published == nil, local, clock.now - waited < slice {
                // Woken without a result before the slice was over: shutdown. Say where it stands now.
                return try await store.record(requestId) ?? record
            }
        }
    }

    /// If `record` is `running` and its owner is known dead, ends its surviving processes and stores it `failed`.
    package func resolveIfAbandoned(_ record: DispatchRecord) async throws -> DispatchRecord {
        guard record.status == .running, let owner = record.owner, record.ownerIsGone(), !heldByMonitor(record) else { return record }
        let reason = abandonReason(record, owner: owner)
        // Compare-and-set: one recoverer ends the row; the others read what it wrote.
        guard let claimed = try await store.claim(record.requestId, from: owner, to: .current(kind: .recover)) else {
            return try await store.record(record.requestId) ?? record
        }
        return try await abandon(claimed, reason: reason)
    }

    /// Ends what the request left running and stores it `failed` with `reason` and the logs it left.
    package func abandon(_ record: DispatchRecord, reason: String) async throws -> DispatchRecord {
        var result = record.result
        result.failLost(reason, request: record.request)
        var killed = 0
        if let backend = backend(for: record) { (result, killed) = await backend.salvage(result) }
        let now = Date()
        result.completedAt = ISO8601.string(now)
        result.updatedAt = result.completedAt!
        if let started = result.startedAt.flatMap(ISO8601.date) {
            result.durationMs = max(0, Int(now.timeIntervalSince(started) * 1000))
        }
        if let logs = result.logs {
            result.logs = LogInfo(
                stdout: LogFile.tail(logs.stdoutPath, maxBytes: LogInfo.tailBytes),
                stderr: LogFile.tail(logs.stderrPath, maxBytes: LogInfo.tailBytes),
                stdoutPath: logs.stdoutPath,
                stderrPath: logs.stderrPath
            )
        }
        logger.warning(
            "abandoned dispatch resolved",
            metadata: [
                "request.id": "\(record.requestId)", "reason": "\(reason)", "processesKilled": "\(killed)",
            ]
        )
        metrics.killed(killed)
        let outcome = try await store.update(result)
        let stored = outcome.record
        if case .updated = outcome {
            notifier.publish(stored.result)
            metrics.finished(stored.result, failure: result.failure)
        }
        return stored
    }
}

/// A dispatch that ran but whose outcome could not be made durable.
package struct DispatchEngineError: Error, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}
