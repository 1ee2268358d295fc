import AgentProcess
import DispatchCore
import Foundation
import Synchronization

/// Wakes in-process waiters the moment a request's terminal result is committed (no polling).
///
/// Subscribe first, then re-read the store, then wait: a result published in between is kept by the subscription.
package final class ResultNotifier: Sendable {
    private let waiters = Mutex<[String: [ObjectIdentifier: Subscription]]>([:])

    package init() {}

    /// Registers interest in `requestId`'s terminal result.
    package func subscribe(_ requestId: String) -> Subscription {
        let subscription = Subscription(requestId: requestId, notifier: self)
        waiters.withLock { $0[requestId, default: [:]][ObjectIdentifier(subscription)] = subscription }
        return subscription
    }

    /// Delivers a terminal result to every subscriber of its request.
    package func publish(_ result: DispatchResult) {
        guard result.status.isTerminal else { return }
        let subscribers = waiters.withLock { $0.removeValue(forKey: result.requestId) } ?? [:]
        for subscriber in subscribers.values { subscriber.fulfill(result) }
    }

    /// The requests someone waits for now.
    package var waitingIds: [String] { waiters.withLock { Array($0.keys) } }

    /// Wakes every waiter with no result (shutdown).
    package func wakeAll() {
        let all = waiters.withLock { waiters -> [Subscription] in
            defer { waiters.removeAll() }
            return waiters.values.flatMap(\.values)
        }
        for subscriber in all { subscriber.fulfill(nil) }
    }

    /// Number of waiting subscriptions (metrics, tests).
    package var waiterCount: Int { waiters.withLock { $0.values.reduce(0) { $0 + $1.count } } }

    fileprivate func remove(_ subscription: Subscription) {
        waiters.withLock { waiters in
            waiters[subscription.requestId]?.removeValue(forKey: ObjectIdentifier(subscription))
            if waiters[subscription.requestId]?.isEmpty == true { waiters.removeValue(forKey: subscription.requestId) }
        }
    }

    /// One waiter's slot: holds a result published before anyone waits on it.
    package final class Subscription: Sendable {
        private enum State {
            case pending
            case waiting(CheckedContinuation<DispatchResult?, Never>)
            case done(DispatchResult?)
        }

        let requestId: String
        private let state = Mutex<State>(.pending)
        private weak let notifier: ResultNotifier?

        fileprivate init(requestId: String, notifier: ResultNotifier) {
            self.requestId = requestId
            self.notifier = notifier
        }

        /// The terminal result, or `nil` when `timeout` passes first (a timer on the ``ProcessRuntime``), on shutdown,
        /// or when the waiting task is cancelled.
        package func value(timeout: Duration) async -> DispatchResult? {
            let runtime = ProcessRuntime.shared
            let timer = runtime.timer(at: .now + timeout) { [weak self] in self?.fulfill(nil) }
            defer {
                runtime.cancel(timer)
                notifier?.remove(self)
            }
            return await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready: DispatchResult?? = state.withLock { state in
                        if case .done(let result) = state { return .some(result) }
                        state = .waiting(continuation)
                        return .none
                    }
                    if case .some(let result) = ready { continuation.resume(returning: result) }
                }
            } onCancel: {
                fulfill(nil)
            }
        }

        /// Stops waiting without a value.
        package func cancel() {
            fulfill(nil)
            notifier?.remove(self)
        }

        fileprivate func fulfill(_ result: DispatchResult?) {
            let continuation = state.withLock { state -> CheckedContinuation<DispatchResult?, Never>? in
                switch state {
                case .pending:
                    state = .done(result)
                    return nil
                case .waiting(let continuation):
                    state = .done(result)
                    return continuation
                case .done:
                    return nil
                }
            }
            continuation?.resume(returning: result)
        }
    }
}
