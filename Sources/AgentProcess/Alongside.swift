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

/// Runs `work` in a child task of its own and waits for it. A task's allocator keeps the memory of its deepest moment
/// for as long as the task lives: a run's long-lived task does its deep, short work (the start's store writes, the
/// `running` write as an attempt starts) this way, so what it holds while its agent runs is only what it needs then.
package func inChildTask<T: Sendable>(_ work: @escaping @Sendable () async -> T) async -> T {
    await withTaskGroup(of: T.self, returning: T.self) { group in
        group.addTask(operation: work)
        // A child's value always comes: the group has exactly one child.
        var value: T?
        while let next = await group.next() { value = next }
        return value!
    }
}
