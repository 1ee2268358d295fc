import Execution
import UnixSignals

/// Turns signals into a cancellation instead of process death (swift-service-lifecycle's `UnixSignalsSequence`).
enum SignalTrap {
    /// Calls `handler` for each of `signals` until the returned task is cancelled.
    static func start(_ signals: [UnixSignal], handler: @escaping @Sendable (UnixSignal) -> Void) async -> Task<Void, Never> {
        let sequence = await UnixSignalsSequence(trapping: signals)
        return Task {
            for await signal in sequence { handler(signal) }
        }
    }

    /// Runs `work` with `token` (and the work's task) cancelled by the first of `signals`. The trap is in place
    /// before the work starts, so no signal in between kills the process with its row left `running`.
    static func run<T: Sendable>(
        trapping signals: [UnixSignal],
        token: CancelToken,
        reason: @escaping @Sendable (UnixSignal) -> String,
        work: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let trap = await start(signals) { signal in token.cancel(reason: reason(signal)) }
        defer { trap.cancel() }
        let task = Task { try await work() }
        let observer = token.observe { task.cancel() }
        defer { token.removeObserver(observer) }
        if token.reason != nil { task.cancel() }
        return try await task.value
    }
}
