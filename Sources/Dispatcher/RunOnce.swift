import Synchronization

/// A piece of work run at most once, by whichever caller comes first (the leftover sweep: before a result is held,
/// or after it is stored).
final class RunOnce: Sendable {
    private let pending: Mutex<(@Sendable () async -> Int)?>

    init(_ work: (@Sendable () async -> Int)?) {
        pending = Mutex(work)
    }

    /// Runs the work if nobody has; returns what it returned (0 when it ran before).
    func run() async -> Int {
        guard
            let work = pending.withLock({ pending -> (@Sendable () async -> Int)? in
                defer { pending = nil }
                return pending
            })
        else { return 0 }
        return await work()
    }
}
