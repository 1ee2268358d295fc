import AgentProcess
import DispatchCore
import Foundation
import Git
import Synchronization

/// Runs blocking work (libgit2, file trees) on the runner's bounded ``BlockingPool``, never on the cooperative pool,
/// bounded by a time limit (a timer on the ``ProcessRuntime``, cancelled when the work ends): when the limit passes
/// first the caller gets ``SandboxError/Code/timedOut`` and the work finishes in the background.
package enum BlockingWork {
    package static func run<T: Sendable>(
        _ name: String,
        timeout: Duration?,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let once = ResumeOnce<T>()
        let runtime = ProcessRuntime.shared
        let timer = timeout.map { timeout in
            runtime.timer(at: .now + timeout) {
                once.resume(with: .failure(SandboxError(code: .timedOut, message: DispatchFailure.stepTimedOut(name, afterMs: timeout.milliseconds))))
            }
        }
        defer { if let timer { runtime.cancel(timer) } }
        return try await withCheckedThrowingContinuation { continuation in
            once.set(continuation)
            BlockingPool.shared.submit { if !once.isDone { once.resume(with: Result { try body() }) } }
        }
    }
}

extension BlockingWork {
    /// How long stopped work may take to stop before it is given up on (a FIFO or a stuck read inside libgit2 never
    /// looks at the flag). Work given up on can no longer write: its final writes go through
    /// ``CheckoutCancellation/whileLive(_:)``.
    static let stopGrace: Duration = .seconds(5)

    /// Like ``run(_:timeout:_:)`` for work that can be stopped: when the limit passes or the calling task is
    /// cancelled, `cancellation` is set and the work is waited for (it stops within one file) — at most
    /// ``stopGrace`` — before the caller hears of it, so nothing goes on writing after this returns.
    package static func run<T: Sendable>(
        _ name: String,
        timeout: Duration,
        cancellation: CheckoutCancellation,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let once = ResumeOnce<T>()
        let stopped = SandboxError(code: .timedOut, message: "\(name) was stopped after \(timeout.milliseconds)ms")
        let runtime = ProcessRuntime.shared
        let timers = Mutex<[ProcessRuntime.Token]>([])
        let stop = { @Sendable in
            cancellation.cancel()
            // Given up on if it does not stop by itself in time.
            let giveUp = runtime.timer(at: .now + stopGrace) { once.resume(with: .failure(stopped)) }
            timers.withLock { $0.append(giveUp) }
        }
        // Only a limit that passes cancels: a timer cancelled because the work ended never fires.
        timers.withLock { $0.append(runtime.timer(at: .now + timeout) { stop() }) }
        defer { for timer in timers.withLock({ $0 }) { runtime.cancel(timer) } }
        let outcome: Result<T, any Error>
        do {
            outcome = .success(
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        once.set(continuation)
                        BlockingPool.shared.submit { if !once.isDone { once.resume(with: Result { try body() }) } }
                    }
                } onCancel: {
                    stop()
                }
            )
        } catch {
            outcome = .failure(error)
        }
        if cancellation.isCancelled, (try? outcome.get()) == nil { throw stopped }
        return try outcome.get()
    }
}

/// A continuation resumed by whichever side comes first; a result that comes before the continuation is kept for it.
private final class ResumeOnce<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var done = false
    }

    private let state = Mutex(State())

    /// Whether a result came (work that has not started by then is not worth starting).
    var isDone: Bool { state.withLock { $0.done } }

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLock { state -> Result<T, any Error>? in
            if let early = state.early {
                state.early = nil
                return early
            }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func resume(with result: Result<T, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard !state.done else { return nil }
            state.done = true
            guard let continuation = state.continuation else {
                state.early = result
                return nil
            }
            state.continuation = nil
            return continuation
        }
        continuation?.resume(with: result)
    }
}
