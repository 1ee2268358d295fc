import Foundation

/// The runner's bounded pool for blocking work (libgit2 calls, big file trees): at most ``limit`` threads, started
/// as work arrives and kept for the next, work queued first in, first out beyond that. Before it, each blocking call
/// had a thread of its own (issue: scale).
package final class BlockingPool: @unchecked Sendable {
    /// The pool of this process.
    package static let shared = BlockingPool(limit: 16)

    /// The most threads it runs.
    package let limit: Int
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var idle = 0
    private var threads = 0

    package init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// Threads started so far.
    package var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    /// Runs `job` on a thread of the pool (when one is free).
    package func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        queue.append(job)
        // A thread for every job no idle thread will take (an idle one counts until it has woken and taken its job).
        if queue.count > idle, threads < limit {
            threads += 1
            let thread = Thread { [self] in work() }
            thread.name = "blocking-\(threads)"
            thread.start()
        } else {
            condition.signal()
        }
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while queue.isEmpty {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job = queue.removeFirst()
            condition.unlock()
            job()
        }
    }
}
