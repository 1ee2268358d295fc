/// Runs `body` with `companion` beside it as a child task, for exactly as long as `body` runs: once `body` returns,
/// `companion` is cancelled and awaited (structured: nothing of it outlives the call). For the work that watches a
/// run while it runs — a lease renewal, a watch for a result stored by another path, a disk watch.
package func alongside<T>(
    _ companion: @escaping @Sendable () async -> Void,
    _ body: () async -> T
) async -> T {
    // Discarding: a companion that ended early (nothing to watch) is released at once, not kept for the run's length.
    await withDiscardingTaskGroup(returning: T.self) { group in
        group.addTask(operation: companion)
        let value = await body()
        group.cancelAll()
        return value
    }
}
