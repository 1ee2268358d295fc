import AgentProcess
import DispatchCore
import Foundation

extension AgentPhase {
    /// Where the attempt a previous runner recorded last stands (its monitor alive, ended, gone), from `known`.
    package static func monitorState(of known: DispatchResult) -> MonitorRecord.State {
        guard let logs = known.logs, let record = MonitorRecord(stdoutPath: logs.stdoutPath) else { return .none }
        return record.state()
    }

    /// Adopts the attempt a previous runner started (`known.logs` names it) from its monitor and runs the rest of the
    /// phase (the next attempts, if it failed) as ``run(_:token:attemptStarting:)`` would have. `nil` when there is no
    /// monitor to adopt: the run is lost.
    @inline(never)
    package func resume(
        _ input: Input,
        known: DispatchResult,
        token: CancelToken,
        attemptStarting: @Sendable (LogInfo, [AttemptRecord]) async -> Void
    ) async -> Outcome? {
        let models = input.request.modelAttempts
        guard let logs = known.logs, let monitor = MonitorRecord(stdoutPath: logs.stdoutPath),
            let index = Self.attemptIndex(logs.stdoutPath), models.indices.contains(index)
        else { return nil }
        var outcome = Outcome(status: .failed)
        outcome.attempts = known.attempts
        let launch: Launch
        switch prepare(input) {
        case .success(let prepared): launch = prepared
        case .failure(let failure): return outcome.end(failure)
        }
        let started = monitor.started()
        let allowedMs = started?.allowedMs ?? input.deadline.remainingMs
        let leftMs = Int(max(0, Int64(allowedMs) - (started.map(monitor.elapsedMs) ?? 0)))
        let attempt = Attempt(
            model: models[index],
            label: "agent attempt \(index + 1)/\(models.count)",
            allowedMs: allowedMs,
            logs: Self.logs(of: index, in: input.logsDir)
        )
        let watched = ProcessSupervisor.Watched(
            stdoutPath: attempt.logs.stdoutPath,
            stderrPath: attempt.logs.stderrPath,
            marker: AgentEnvironment.marker(requestId: input.request.requestId),
            isolated: true,
            record: monitor
        )
        logger.notice("adopting \(attempt.label) from its monitor", metadata: ["monitor.pid": "\(started.map { "\($0.pid)" } ?? "-")"])
        guard
            let process = await supervisor.adopt(
                watched,
                limits: limits(timeoutMs: leftMs, token: token),
                finalEventSeen: Self.completionProbe(launch.adapter, stdoutPath: attempt.logs.stdoutPath),
                sweepLeftovers: !input.sweepAfterResult
            )
        else { return nil }
        if process.ending == .letGo { return outcome.letGo() }
        if input.sweepAfterResult, process.pid > 0 { (outcome.pendingSweep, outcome.pendingCgroup) = (process.pid, process.cgroup) }
        if let ended = record(process, of: attempt, input: input, adapter: launch.adapter, token: token, outcome: &outcome) { return ended }
        return await runAttempts(from: index + 1, input: input, launch: launch, token: token, outcome: outcome, attemptStarting: attemptStarting)
    }

    /// `N - 1` of `…/attempt-N.stdout.log`.
    static func attemptIndex(_ stdoutPath: String) -> Int? {
        let name = (stdoutPath as NSString).lastPathComponent
        guard name.hasPrefix("attempt-"), name.hasSuffix(".stdout.log") else { return nil }
        return Int(name.dropFirst("attempt-".count).dropLast(".stdout.log".count)).map { $0 - 1 }
    }
}

extension DispatchResult {
    /// Ends a run whose runner was lost as `failed` with `reason`, keeping the attempt that runner had started (its
    /// logs are the last ones recorded) in `attempts`: an agent did run, for as long as until now.
    package mutating func failLost(_ reason: String, request: DispatchRequest, now: Date = Date()) {
        fail(.runnerLost(reason: reason))
        guard let stdoutPath = logs?.stdoutPath, let index = AgentPhase.attemptIndex(stdoutPath), attempts.count == index else { return }
        let models = request.modelAttempts
        let started = ISO8601.date(updatedAt) ?? startedAt.flatMap(ISO8601.date) ?? now
        attempts.append(
            AttemptRecord(
                model: models.indices.contains(index) ? models[index] : nil,
                startedAt: ISO8601.string(started),
                durationMs: max(0, Int(now.timeIntervalSince(started) * 1000)),
                exitCode: nil,
                signal: nil,
                timedOut: false,
                error: reason
            )
        )
    }
}
