import AgentProcess
import DispatchCore
import DispatchStore
import Foundation
import Logging
import Sandbox

/// The lifecycle of one dispatch: dedupe → running → backend → artifacts → terminal result.
///
/// Shared by `dispatch run` (one request, in-process), `dispatch serve` (many, admitted by ``DispatchService``) and
/// `dispatch job-runner`.
public final class DispatchEngine: Sendable {
    public let configuration: DispatchConfiguration
    public let store: DispatchStore
    let logger: Logger
    let environment: [String: String]
    let supervisor: ProcessSupervisor
    /// Wakes long-poll waiters when a terminal result is committed.
    public let notifier = ResultNotifier()
    /// Counters for `GET /metrics`.
    public let metrics = DispatchMetrics()
    /// The k8s backend, when configured.
    let k8s: (any RemoteSandboxBackend)?

    /// How often a waiter re-reads a request it does not own.
    static let pollInterval: Duration = .milliseconds(50)

    public init(
        configuration: DispatchConfiguration, store: DispatchStore, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment, k8s: (any RemoteSandboxBackend)? = nil
    ) {
        self.k8s = k8s
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.environment = environment
        self.supervisor = ProcessSupervisor()
    }

    /// Records `request` in `status` (`running` or `queued`) unless its id is known: the atomic dedupe.
    public func admit(_ request: DispatchRequest, status: DispatchStatus, owner: RunnerOwner) async throws -> DispatchStore.InsertOutcome {
        var result = DispatchResult(request: request, status: status)
        // The backend is fixed at admission: a later change of the default does not move a request.
        if request.executionMode == .sandbox { result.sandboxBackend = request.sandboxBackend ?? configuration.defaultBackend }
        if status == .running { result.startedAt = result.updatedAt }
        return try await store.insert(result, request: request, owner: owner)
    }

    /// Runs `request` to a terminal result in this process, or — when another runner already has its id —
    /// waits for that runner's result. Returns the result and whether it was a duplicate.
    public func runOnce(_ request: DispatchRequest, token: CancelToken) async throws -> (result: DispatchResult, duplicate: Bool) {
        switch try await admit(request, status: .running, owner: .current(kind: "run")) {
        case .inserted(let record):
            // This process vouches for its row while it runs; if it dies, the lease runs out and anyone recovers it.
            let store = self.store, owner = record.owner
            let renewal = Task {
                guard let owner else { return }
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(max(1, store.leaseDuration / 3)))
                    _ = try? await store.renewLeases(of: owner)
                }
            }
            defer { renewal.cancel() }
            let result = await execute(record, token: token)
            // Report only what is committed: a terminal result the store would not take is not a result.
            // Read outside this task's cancellation: a cancelled dispatch still reports its stored `cancelled`.
            guard let stored = await committedRecord(record.requestId), stored.status.isTerminal else {
                throw DispatchEngineError(
                    "the \(result.status.rawValue) result of \(record.requestId) could not be stored within "
                        + "\(configuration.storeRetrySeconds)s; not reporting it (the next process that looks at it reconciles from the store)")
            }
            return (stored.result, false)
        case .existing(let record):
            let final = try await awaitTerminal(record.requestId, timeout: nil)
            return (final?.result ?? record.result, true)
        }
    }

    /// Executes an admitted record to its terminal result and stores it. Never throws: every path ends terminal.
    public func execute(_ record: DispatchRecord, token: CancelToken) async -> DispatchResult {
        let request = record.request
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(request.requestId)"
        logger[metadataKey: "tool"] = "\(request.tool.rawValue)"
        logger[metadataKey: "mode"] = "\(request.executionMode.rawValue)"
        if request.executionMode == .sandbox {
            logger[metadataKey: "backend"] = "\((request.sandboxBackend ?? configuration.defaultBackend).rawValue)"
        }
        let deadline = Deadline(budgetMs: request.timeoutMs)
        var result = record.result
        let now = ISO8601.string(Date())
        result.startedAt = record.status == .running ? (result.startedAt ?? now) : now
        if record.status != .running {
            // queued → running only by its claimer: a row cancelled (or taken) meanwhile is not run.
            let store = self.store, id = record.requestId, previous = record.owner
            let claimed = try? await outsideCancellation { try await store.claim(id, from: previous, to: .current(kind: "serve"), startedAt: now) }
            guard let claimed = claimed ?? nil else {
                logger.notice("not starting a dispatch another runner ended or took meanwhile")
                return await committedRecord(id)?.result ?? record.result
            }
            result = claimed.result
        }
        logger.info("dispatch started", metadata: ["budgetMs": "\(deadline.budgetMs)"])

        switch request.executionMode {
        case .host:
            let (hostResult, pendingSweep) = await runHost(request, result: result, deadline: deadline, token: token, logger: logger)
            let stored = await finish(hostResult, deadline: deadline, logger: logger)
            // The result is out; now what the agent left behind (an orphan holding stderr) is ended.
            if let group = pendingSweep {
                metrics.killed(await supervisor.endLeftovers(
                    groupId: group, marker: AgentEnvironment.marker(requestId: request.requestId), grace: supervisor.leftoverGrace))
            }
            return stored
        case .sandbox:
            let backend = request.sandboxBackend ?? configuration.defaultBackend
            result.sandboxBackend = backend
            switch backend {
            case .local:
                result = await runLocalSandbox(request, result: result, deadline: deadline, token: token, logger: logger)
            case .k8s:
                if let k8s {
                    let log = logger
                    result = await k8s.run(request, result: result, deadline: deadline, token: token, engine: self, logger: log) { running in
                        _ = await self.persist(running, owner: nil, logger: log)
                    }
                    // Let go by a shutdown: the Job runs on and the next serve follows it; nothing terminal is written.
                    if token.isDetached, !result.status.isTerminal { return result }
                } else {
                    result.status = .failed
                    result.error = "sandbox backend k8s is not configured in this runner (run it in a cluster or set KUBECONFIG)"
                }
            }
        }
        return await finish(result, deadline: deadline, logger: logger)
    }

    /// Whether a `running` record left by a dead runner can be followed instead of abandoned (a k8s Job runs on).
    /// The row need not name its Job: the name follows from the requestId, and the runner may have died between
    /// creating the Job and recording it.
    public func canReattach(_ record: DispatchRecord) -> Bool {
        k8s != nil && record.request.executionMode == .sandbox && (record.request.sandboxBackend ?? configuration.defaultBackend) == .k8s
    }

    /// Follows a k8s run a previous process started to its terminal result, within what is left of its budget.
    public func reattach(_ record: DispatchRecord, token: CancelToken) async -> DispatchResult {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(record.requestId)"
        logger[metadataKey: "backend"] = "k8s"
        let started = record.result.startedAt.flatMap(ISO8601.date) ?? Date()
        let elapsedMs = max(0, Int(Date().timeIntervalSince(started) * 1000))
        let deadline = Deadline(budgetMs: record.request.timeoutMs, start: .now - .milliseconds(elapsedMs))
        guard let k8s else { return await finish(record.result, deadline: deadline, logger: logger) }
        let result = await k8s.attach(record.request, result: record.result, deadline: deadline, token: token, engine: self, logger: logger)
        if token.isDetached, !result.status.isTerminal { return result }
        return await finish(result, deadline: deadline, logger: logger)
    }

    /// Host mode: the agent runs in `cwd` itself.
    /// Returns the result and the process group whose leftovers are to be ended once the result is written.
    func runHost(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, logger: Logger
    ) async -> (DispatchResult, pid_t?) {
        var result = result
        let workDir = request.cwd ?? configuration.defaultWorkdir
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: workDir, isDirectory: &isDirectory), isDirectory.boolValue else {
            result.status = .failed
            result.error = "working directory \(workDir) does not exist or is not a directory"
            return (result, nil)
        }
        var input = AgentPhase.Input(
            request: request, task: request.task, workDir: workDir, logsDir: runDirectory(request.requestId),
            extraEnv: [:], deadline: deadline, budgetMs: deadline.budgetMs)
        input.sweepAfterResult = true
        let outcome = await runAgentPhase(input, result: result, token: token, logger: logger)
        result.apply(outcome)
        return (result, outcome.pendingSweep)
    }

    /// Runs the agent attempts, recording `running` with each attempt's log paths before it starts.
    func runAgentPhase(_ input: AgentPhase.Input, result: DispatchResult, token: CancelToken, logger: Logger) async -> AgentPhase.Outcome {
        let phase = AgentPhase(configuration: configuration, baseEnvironment: environment, supervisor: supervisor, logger: logger)
        let outcome = await phase.run(input, token: token) { logs, attempts in
            var running = result
            running.logs = logs
            running.attempts = attempts
            running.updatedAt = ISO8601.string(Date())
            _ = await self.persist(running, owner: nil, logger: logger)
        }
        metrics.killed(outcome.processesKilled)
        return outcome
    }

    /// Where a host-mode request keeps its logs and task file.
    public func runDirectory(_ requestId: String) -> String { "\(configuration.stateDir)/runs/\(requestId)" }

    /// Stamps and stores a terminal result; returns what is stored (an earlier terminal result wins).
    func finish(_ result: DispatchResult, deadline: Deadline, logger: Logger) async -> DispatchResult {
        var result = result
        if !result.status.isTerminal {
            result.status = .failed
            result.error = result.error ?? "dispatch ended without a terminal status"
        }
        let now = Date()
        result.completedAt = ISO8601.string(now)
        result.updatedAt = result.completedAt!
        result.durationMs = deadline.elapsedMs
        let stored = await persist(result, owner: nil, logger: logger)
        logger.info("dispatch finished", metadata: [
            "status": "\(stored.status.rawValue)", "durationMs": "\(stored.durationMs ?? -1)", "error": "\(stored.error ?? "")",
        ])
        return stored
    }

    /// Stores `result` outside any task cancellation (a cancelled dispatch must still write `cancelled`).
    /// A terminal write is retried with backoff for ``storeRetryWindow``. Returns what the store holds afterwards:
    /// never a result the store did not take (on a lasting failure, the row as last committed, or `result` when
    /// even that cannot be read; `runOnce` then refuses to report it).
    func persist(_ result: DispatchResult, owner: RunnerOwner?, logger: Logger) async -> DispatchResult {
        let store = self.store
        let window = result.status.isTerminal ? storeRetryWindow : .zero
        let write = { @Sendable () async throws -> DispatchStore.UpdateOutcome in
            let clock = ContinuousClock()
            let end = clock.now + window
            var delay: Duration = .milliseconds(50)
            while true {
                do {
                    return try await store.update(result, owner: owner)
                } catch let error as DispatchStoreError where error.code == .notFound || error.code == .corruptRecord {
                    throw error
                } catch {
                    guard clock.now + delay < end else { throw error }
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(1))
                }
            }
        }
        do {
            let outcome = try await outsideCancellation(write)
            if case .updated(let record) = outcome, record.status.isTerminal {
                notifier.publish(record.result)
                metrics.finished(record.result)
            }
            return outcome.record.result
        } catch {
            logger.error("cannot store the result", metadata: ["error": "\(error)", "status": "\(result.status.rawValue)"])
            return await committedRecord(result.requestId)?.result ?? result
        }
    }

    /// Runs a store operation outside the calling task's cancellation: GRDB's async calls throw once their task is
    /// cancelled, and a cancelled dispatch must still write and read its own row.
    func outsideCancellation<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task.detached(operation: operation).value
    }

    /// The row as committed, read outside cancellation; `nil` when it cannot be read.
    func committedRecord(_ requestId: String) async -> DispatchRecord? {
        let store = self.store
        return (try? await outsideCancellation { try await store.record(requestId) }) ?? nil
    }

    /// How long a terminal write is retried (`DISPATCH_STORE_RETRY_SECONDS`, default 10).
    var storeRetryWindow: Duration { .milliseconds(Int64(configuration.storeRetrySeconds * 1000)) }

    /// Waits until `requestId` is terminal (polling the store, which other processes write), resolving it as
    /// failed if its runner died. `nil` timeout waits indefinitely; returns the record as last seen.
    public func awaitTerminal(_ requestId: String, timeout: Duration?) async throws -> DispatchRecord? {
        let clock = ContinuousClock()
        let end = timeout.map { clock.now + $0 }
        var lastOwnerCheck = clock.now - .seconds(1)
        while true {
            guard var record = try await store.record(requestId) else { return nil }
            if !record.status.isTerminal, clock.now - lastOwnerCheck >= .milliseconds(500) {
                lastOwnerCheck = clock.now
                record = try await resolveIfAbandoned(record)
            }
            if record.status.isTerminal { return record }
            if let end, clock.now >= end { return record }
            if Task.isCancelled { return record }
            try? await Task.sleep(for: Self.pollInterval)
        }
    }

    /// If `record` is `running` and its owner is known dead, ends its surviving processes and stores it `failed`.
    public func resolveIfAbandoned(_ record: DispatchRecord) async throws -> DispatchRecord {
        guard record.status == .running, let owner = record.owner, record.ownerIsGone() else { return record }
        let reason = owner.kind == "serve"
            ? "runner restarted while running; execution abandoned"
            : "runner exited while running (dispatch \(owner.kind) pid \(owner.pid) is gone)"
        // Compare-and-set: one recoverer ends the row; the others read what it wrote.
        guard let claimed = try await store.claim(record.requestId, from: owner, to: .current(kind: "recover")) else {
            return try await store.record(record.requestId) ?? record
        }
        return try await abandon(claimed, reason: reason)
    }

    /// Ends every process carrying the request's marker and stores it `failed` with `reason` and the logs it left.
    public func abandon(_ record: DispatchRecord, reason: String) async throws -> DispatchRecord {
        let killed = await supervisor.endLeftovers(
            groupId: nil, marker: AgentEnvironment.marker(requestId: record.requestId), grace: .milliseconds(200))
        var result = record.result
        result.status = .failed
        result.error = reason
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
                stdoutPath: logs.stdoutPath, stderrPath: logs.stderrPath)
        }
        let maxPatchFileBytes = configuration.maxPatchFileBytes
        if let info = result.localSandbox {
            result.artifacts = try? await BlockingWork.run("artifact export", timeout: .seconds(30)) {
                try ArtifactExporter(maxPatchFileBytes: maxPatchFileBytes).export(LocalSandbox(abandoned: info))
            }
        }
        logger.warning("abandoned dispatch resolved", metadata: [
            "request.id": "\(record.requestId)", "reason": "\(reason)", "processesKilled": "\(killed)",
        ])
        metrics.killed(killed)
        let outcome = try await store.update(result)
        let stored = outcome.record
        if case .updated = outcome {
            notifier.publish(stored.result)
            metrics.finished(stored.result)
        }
        try? await SandboxRegistry(store: store).finish(requestId: record.requestId, status: stored.status)
        return stored
    }
}

/// A dispatch that ran but whose outcome could not be made durable.
public struct DispatchEngineError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension DispatchResult {
    /// Copies the agent phase's outcome into the result.
    mutating func apply(_ outcome: AgentPhase.Outcome) {
        status = outcome.status
        error = outcome.status == .completed ? nil : outcome.error
        attempts = outcome.attempts
        if let logs = outcome.logs { self.logs = logs }
        if outcome.status == .completed { setResultText(outcome.finalText ?? "") }
    }
}
