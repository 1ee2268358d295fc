import Foundation

/// One overall time budget, created once per dispatch; every phase asks it for what remains.
///
/// Backed by the monotonic clock, so wall-clock jumps neither extend nor shorten a budget.
package struct Deadline: Sendable, Equatable {
    /// The whole budget, in milliseconds.
    package let budgetMs: Int
    /// When the budget started, on the monotonic clock.
    package let start: ContinuousClock.Instant

    /// Starts a budget of `budgetMs` now.
    package init(budgetMs: Int, start: ContinuousClock.Instant = .now) {
        self.budgetMs = budgetMs
        self.start = start
    }

    /// The instant the budget ends.
    package var end: ContinuousClock.Instant { start + .milliseconds(budgetMs) }

    /// What is left, never negative.
    package var remaining: Duration { max(.zero, end - .now) }

    /// What is left in whole milliseconds.
    package var remainingMs: Int { Int(remaining.milliseconds) }

    /// Time spent since the budget started, in milliseconds.
    package var elapsedMs: Int { Int((ContinuousClock.now - start).milliseconds) }

    /// Whether the budget is used up.
    package var isExpired: Bool { ContinuousClock.now >= end }
}

extension Duration {
    /// This duration in whole milliseconds (truncated).
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
