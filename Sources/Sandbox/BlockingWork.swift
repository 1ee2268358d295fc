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
    /// Like ``run(_:timeout:_:)`` for work that can be stopped: when the limit passes or the calling task is
    /// cancelled, `cancellation` is set and the work is waited for (it stops within one file) before the caller
    /// hears of it, so nothing goes on writing after this returns.
    package static func run<T: Sendable>(
        _ name: String,
        timeout: Duration,
        cancellation: CheckoutCancellation,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let timer = Task {
            // Only a limit that passed cancels: a timer cancelled because the work ended must not (it did, at random,
            // and a quick failure was then reported as a timeout).
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            cancellation.cancel()
        }
        let outcome: Result<T, any Error> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let thread = Thread { continuation.resume(returning: Result { try body() }) }
                thread.name = name
                thread.start()
            }
        } onCancel: {
            cancellation.cancel()
        }
        timer.cancel()
        if cancellation.isCancelled, (try? outcome.get()) == nil {
            throw SandboxError(code: .timedOut, message: "\(name) was stopped after \(timeout.milliseconds)ms")
        }
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
