import DispatchCore
import Logging

/// A sandbox backend that runs the request elsewhere (the k8s Job controller lives in `Kube`, which depends on
/// this target; the engine only knows this protocol).
public protocol RemoteSandboxBackend: Sendable {
    /// Runs `request` to a terminal result within `deadline`. `update` stores a non-terminal result (e.g. with the Job name).
    func run(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine, logger: Logger,
        update: @Sendable (DispatchResult) async -> Void
    ) async -> DispatchResult

    /// Follows a run another (now dead) process started, to its terminal result; does not start anything.
    func attach(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, engine: DispatchEngine, logger: Logger
    ) async -> DispatchResult

    /// After restart recovery: clean up what the backend left running for requests that are already terminal
    /// (e.g. a Job whose delete failed while the API was down).
    func reconcile(engine: DispatchEngine, logger: Logger) async
}

extension RemoteSandboxBackend {
    public func reconcile(engine: DispatchEngine, logger: Logger) async {}
}
