import Synchronization

/// Why a running dispatch is being cancelled; read when the `cancelled` result is written.
public final class CancelToken: Sendable {
    private let state = Mutex<String?>(nil)

    public init() {}

    /// Records the first reason given; later reasons are ignored.
    public func cancel(reason: String) {
        state.withLock { current in
            if current == nil { current = reason }
        }
    }

    /// The reason, once cancelled.
    public var reason: String? { state.withLock { $0 } }
}
