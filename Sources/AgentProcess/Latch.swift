import Synchronization

/// A flag set once, for good: whoever watches it is told when it is set (an observer registered after is called at
/// once), and a task can wait for it. A dispatch's "let go" (``ProcessLimits/letGo``) and a run's end are latches.
package final class Latch: Sendable {
    private struct State {
        var isSet = false
        var observers: [UInt64: @Sendable () -> Void] = [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())

    package init() {}

    /// Sets the flag and calls every observer once (the first call only).
    package func set() {
        let observers = state.withLock { state -> [@Sendable () -> Void] in
            guard !state.isSet else { return [] }
            state.isSet = true
            defer { state.observers.removeAll() }
            return Array(state.observers.values)
        }
        for observer in observers { observer() }
    }

    package var isSet: Bool { state.withLock { $0.isSet } }

    /// Calls `observer` once the flag is set (now, when it already is); the key stops it (``ignore(_:)``).
    @discardableResult
    package func observe(_ observer: @escaping @Sendable () -> Void) -> UInt64 {
        let key = state.withLock { state -> UInt64? in
            guard !state.isSet else { return nil }
            state.next += 1
            state.observers[state.next] = observer
            return state.next
        }
        guard let key else {
            observer()
            return 0
        }
        return key
    }

    /// Stops the observer registered under `key` from being called.
    package func ignore(_ key: UInt64) {
        state.withLock { _ = $0.observers.removeValue(forKey: key) }
    }

    /// Waits until the flag is set, or the calling task is cancelled.
    package func wait() async {
        let wakeup = Wakeup()
        let key = observe { wakeup.signal() }
        defer { ignore(key) }
        while !isSet, !Task.isCancelled { await wakeup.wait() }
    }
}
