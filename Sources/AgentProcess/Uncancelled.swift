/// Runs `operation` to its end even when the calling task is cancelled, and waits for it.
///
/// The one way this codebase steps out of structured cancellation, kept for work a cancellation must not cut
/// short: the terminal write of a cancelled dispatch, the Job delete and last log read of a cancelled k8s run,
/// the job-runner's final callback after SIGTERM, the sweep of an agent's leftovers. It needs a detached task
/// because Swift has no way to shield a child task from its parent's cancellation, and GRDB's and
/// AsyncHTTPClient's calls give up (or drop the request unsent) once their task is cancelled. Lives in the
/// lowest target every caller shares.
package func uncancelled<T: Sendable>(_ operation: @escaping @Sendable () async -> T) async -> T {
    await Task.detached(operation: operation).value
}

/// ``uncancelled(_:)`` for an operation that throws.
package func uncancelled<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await Task.detached(operation: operation).value
}
