import DispatchCore
import Synchronization

/// Terminal results the store would not take (a full disk), held by the `serve` that made them and written again
/// until they commit (CONTRACT §7): the row stays `running` under its live owner meanwhile, never lost, and
/// `/readyz` answers 503 while any is held. A one-shot runner (`dispatch run`) does not hold: it reports the failure.
package final class HeldResults: Sendable {
    private struct State {
        var holding = false
        var results: [String: DispatchResult] = [:]
    }

    private let state = Mutex(State())

    init() {}

    /// From now on unstored terminal results are held (serve's dispatch service, at start).
    package func begin() { state.withLock { $0.holding = true } }

    /// Stops holding (shutdown): the writes that still wait give up, and their rows are left to the next runner.
    package func stop() { state.withLock { $0.holding = false } }

    /// Whether unstored terminal results are held now.
    var isHolding: Bool { state.withLock { $0.holding } }

    /// How many terminal results wait for the store.
    package var count: Int { state.withLock { $0.results.count } }

    func hold(_ result: DispatchResult) { state.withLock { $0.results[result.requestId] = result } }

    func release(_ requestId: String) { _ = state.withLock { $0.results.removeValue(forKey: requestId) } }
}
