import Execution
import UnixSignals

/// Turns signals into a cancellation instead of process death (swift-service-lifecycle's `UnixSignalsSequence`).
enum SignalTrap {
    /// Runs `work` with `token` cancelled by the first of `signals`, and the work cancelled once the token is. The
    /// trap is in place before the work starts, so no signal in between kills the process with its row left
    /// `running`. The trap and the token's observer are children of this call, ended with it.
    static func run<T: Sendable>(
        trapping signals: [UnixSignal],
        token: CancelToken,
        reason: @escaping @Sendable (UnixSignal) -> String,
        work: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let trapped = await UnixSignalsSequence(trapping: signals)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                for await signal in trapped { token.cancel(reason: reason(signal)) }
                return nil
            }
            group.addTask {
                await token.stopped.wait()
                return nil
            }
            group.addTask { try await work() }
            while let next = try await group.next() {
                // The work's value, or the token was stopped: either way nothing but the work is left to wait for,
                // and a stopped token ends the work too (it still reports what it stored).
                group.cancelAll()
                if let value = next { return value }
            }
            preconditionFailure("the work's task ended without a value")
        }
    }
}
