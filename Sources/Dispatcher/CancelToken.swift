import Synchronization

/// A cancellation signal with a reason, shared by a dispatch and whoever may stop it — or, for a run that
/// outlives this process (a k8s Job), a request to let go of it without stopping it.
public final class CancelToken: Sendable {
    private struct State {
        var reason: String?
        var detached = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Records the first reason given; later reasons are ignored.
    public func cancel(reason: String) {
        state.withLock { current in
            if current.reason == nil, !current.detached { current.reason = reason }
        }
    }

    /// Asks the dispatch to stop following its run without ending it (a shutdown leaving a k8s Job to the next
    /// `serve`): nothing is deleted and no terminal result is written. Ignored once cancelled.
    public func detach() {
        state.withLock { current in
            if current.reason == nil { current.detached = true }
        }
    }

    /// The reason, once cancelled.
    public var reason: String? { state.withLock { $0.reason } }

    /// Whether ``detach()`` was asked for.
    public var isDetached: Bool { state.withLock { $0.detached } }
}
