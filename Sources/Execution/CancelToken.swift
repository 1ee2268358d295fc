import AgentProcess
import Synchronization

/// A cancellation signal with a reason, shared by a dispatch and whoever may stop it — or, for a run that
/// outlives this process (a k8s Job), a request to let go of it without stopping it, or word that its result
/// was stored by another path (the Job's callback).
package final class CancelToken: Sendable {
    private struct State {
        var reason: String?
        var detached = false
        var settled = false
        var observers: [UInt64: @Sendable () -> Void] = [:]
        var nextObserver: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Set by ``detach()``: the processes the run supervises are let go of, not ended (``ProcessLimits/letGo``).
    package let letGo = Latch()

    /// Set by ``cancel(reason:)``: the processes the run supervises are ended (``ProcessLimits/stop``).
    package let stopped = Latch()

    /// A token nobody has cancelled yet.
    package init() {}

    /// Records the first reason given; later reasons are ignored.
    package func cancel(reason: String) {
        change { current in
            guard current.reason == nil, !current.detached else { return false }
            current.reason = reason
            return true
        }
        if self.reason != nil { stopped.set() }
    }

    /// Asks the dispatch to stop following its run without ending it (a shutdown leaving a k8s Job to the next
    /// `serve`): nothing is deleted and no terminal result is written. Ignored once cancelled.
    package func detach() {
        change { current in
            guard current.reason == nil, !current.detached else { return false }
            current.detached = true
            return true
        }
        if isDetached { letGo.set() }
    }

    /// Tells the run that its terminal result is already stored (by the Job's callback): it stops following.
    package func settle() {
        change { current in
            guard !current.settled else { return false }
            current.settled = true
            return true
        }
    }

    /// The reason, once cancelled.
    package var reason: String? { state.withLock { $0.reason } }

    /// Whether ``detach()`` was asked for.
    package var isDetached: Bool { state.withLock { $0.detached } }

    /// Whether ``settle()`` was called.
    package var isSettled: Bool { state.withLock { $0.settled } }

    /// Calls `observer` after every change (cancel, detach, settle) until ``removeObserver(_:)``; returns its key.
    package func observe(_ observer: @escaping @Sendable () -> Void) -> UInt64 {
        state.withLock { current in
            current.nextObserver += 1
            current.observers[current.nextObserver] = observer
            return current.nextObserver
        }
    }

    /// Stops calling the observer registered under `key`.
    package func removeObserver(_ key: UInt64) {
        state.withLock { _ = $0.observers.removeValue(forKey: key) }
    }

    private func change(_ body: (inout State) -> Bool) {
        let observers = state.withLock { current -> [@Sendable () -> Void] in
            body(&current) ? Array(current.observers.values) : []
        }
        for observer in observers { observer() }
    }
}
