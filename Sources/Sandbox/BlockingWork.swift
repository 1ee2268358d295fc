import DispatchCore
import Foundation
import Synchronization

/// Runs blocking work (libgit2, file trees) on its own thread, never on the cooperative pool,
/// bounded by a time limit: when the limit passes first the caller gets ``SandboxError/Code/timedOut``
/// and the thread finishes in the background.
public enum BlockingWork {
    public static func run<T: Sendable>(
        _ name: String, timeout: Duration?, _ body: @escaping @Sendable () throws -> T
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
                    once.resume(with: .failure(SandboxError(code: .timedOut, message: "\(name) timed out after \(timeout.milliseconds)ms")))
                }
            }
        }
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
