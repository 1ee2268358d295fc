import DispatchCore
import Foundation
import Git
import Synchronization

/// Runs blocking work (libgit2, file trees) on its own thread, never on the cooperative pool,
/// bounded by a time limit: when the limit passes first the caller gets ``SandboxError/Code/timedOut``
/// and the thread finishes in the background.
package enum BlockingWork {
    package static func run<T: Sendable>(
        _ name: String,
        timeout: Duration?,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let once = ResumeOnce<T>()
        return try await withCheckedThrowingContinuation { continuation in
            once.set(continuation)
            let thread = Thread { once.resume(with: Result { try body() }) }
            thread.name = name
            thread.start()
            if let timeout {
                Task {
                    try? await Task.sleep(for: timeout)
                    once.resume(
                        with: .failure(SandboxError(code: .timedOut, message: DispatchFailure.stepTimedOut(name, afterMs: timeout.milliseconds)))
                    )
                }
            }
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
        let stop = { @Sendable in
            cancellation.cancel()
            // Given up on if it does not stop by itself in time.
            Task {
                try? await Task.sleep(for: stopGrace)
                once.resume(with: .failure(stopped))
            }
        }
        let timer = Task {
            // Only a limit that passed cancels: a timer cancelled because the work ended must not (it did, at random,
            // and a quick failure was then reported as a timeout).
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            stop()
        }
        defer { timer.cancel() }
        let outcome: Result<T, any Error>
        do {
            outcome = .success(
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { continuation in
                        once.set(continuation)
                        let thread = Thread { once.resume(with: Result { try body() }) }
                        thread.name = name
                        thread.start()
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

/// A continuation resumed by whichever side comes first.
private final class ResumeOnce<T: Sendable>: Sendable {
    private let pending = Mutex<CheckedContinuation<T, any Error>?>(nil)

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        pending.withLock { $0 = continuation }
    }

    func resume(with result: Result<T, any Error>) {
        let continuation = pending.withLock { pending -> CheckedContinuation<T, any Error>? in
            defer { pending = nil }
            return pending
        }
        continuation?.resume(with: result)
    }
}
