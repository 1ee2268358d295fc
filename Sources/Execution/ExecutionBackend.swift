import DispatchCore
import Logging

/// Where an admitted request runs: the host checkout, a local sandbox, a Kubernetes Job.
///
/// The engine (in `Dispatcher`) owns the lifecycle — dedupe, `running`, the terminal write — and hands a backend
/// only what running one request needs (``BackendContext``). A backend never sees the store or the engine, so
/// each one can be read, replaced and tested on its own.
package protocol ExecutionBackend: Sendable {
    /// Runs the request to an outcome within the context's deadline. Never throws: every failure is an outcome.
    func run(_ context: BackendContext) async -> BackendOutcome

    /// Why this backend will not run `request`, decided before anything is recorded (a `cwd` inside the runner's
    /// hidden parts); `nil` when it will.
    func refusal(of request: DispatchRequest) -> RequestValidationError?

    /// Whether a run this backend started outlives the process that started it, so that a new runner can
    /// ``attach(_:)`` to it after a restart (a k8s Job runs on; a local process died with its runner).
    var followsAfterRestart: Bool { get }

    /// Whether the run a dead runner left (`known` is what it recorded) can be followed or adopted by ``attach(_:)``
    /// rather than ended: a Job runs on; a local attempt whose monitor lives (or recorded its end) is adopted.
    func canAttach(_ known: DispatchResult) -> Bool

    /// Follows a run a previous (now dead) process started, to its outcome; starts nothing new.
    /// `context.known` holds what that process recorded.
    func attach(_ context: BackendContext) async -> BackendOutcome

    /// Ends what is left of a run whose runner died without following it (processes carrying its marker) and
    /// adds to `result` what can still be saved (a sandbox's patch). `result` is already `failed` with the reason.
    /// Returns how many processes were killed beside the updated result.
    func salvage(_ result: DispatchResult) async -> (result: DispatchResult, processesKilled: Int)

    /// After a restart: cleans up what the backend left running for requests that are already terminal
    /// (a Job whose delete failed while the API was down). `isTerminal` answers from the store.
    func reconcile(isTerminal: @escaping @Sendable (String) async -> Bool, logger: Logger) async

    /// The backend's own background work (a warm pool's refills), run by the service that owns it until cancelled.
    func background() async
}

extension ExecutionBackend {
    /// Refuses nothing.
    package func refusal(of request: DispatchRequest) -> RequestValidationError? { nil }

    /// Local runs do not outlive their runner.
    package var followsAfterRestart: Bool { false }

    /// Runs that outlive their runner can be followed.
    package func canAttach(_ known: DispatchResult) -> Bool { followsAfterRestart }

    /// A backend whose runs cannot outlive their runner has nothing to follow.
    package func attach(_ context: BackendContext) async -> BackendOutcome {
        var result = context.known
        result.fail(.message("cannot follow a \(result.executionMode.rawValue) run after a restart"))
        return .ended(result)
    }

    /// Nothing to end or save by default.
    package func salvage(_ result: DispatchResult) async -> (result: DispatchResult, processesKilled: Int) { (result, 0) }

    /// Nothing to reconcile by default.
    package func reconcile(isTerminal: @escaping @Sendable (String) async -> Bool, logger: Logger) async {}

    /// No background work by default.
    package func background() async {}
}

/// Everything a backend gets for one run, and nothing else.
package struct BackendContext: Sendable {
    /// The admitted request.
    package let request: DispatchRequest
    /// The result as recorded so far: `running` with its `startedAt`, and on a re-attach the Job or sandbox the
    /// previous runner recorded. A backend returns it updated.
    package let known: DispatchResult
    /// The one budget of the whole run.
    package let deadline: Deadline
    /// Cancellation (with its reason), a shutdown letting go of the run, or a result stored by another path.
    package let cancellation: CancelToken
    /// Records a non-terminal update (log paths of the next attempt, the sandbox, the Job's name) as `running`.
    package let progress: @Sendable (DispatchResult) async -> Void
    /// Carries `request.id`, `tool`, `mode` and `backend` metadata.
    package let logger: Logger

    /// A context for one run.
    package init(
        request: DispatchRequest,
        known: DispatchResult,
        deadline: Deadline,
        cancellation: CancelToken,
        logger: Logger,
        progress: @escaping @Sendable (DispatchResult) async -> Void
    ) {
        self.request = request
        self.known = known
        self.deadline = deadline
        self.cancellation = cancellation
        self.logger = logger
        self.progress = progress
    }
}

/// What a backend's run came to.
package enum BackendOutcome: Sendable {
    /// The run ended. `result` holds its status, the error or the answer, logs, attempts and artifacts;
    /// `processesKilled` counts the processes the backend had to end. `afterRecording`, when present, is called
    /// once the terminal result is stored (host mode ends what the agent left behind only then, so the result
    /// never waits for an orphan) and returns how many more it killed.
    case ended(DispatchResult, processesKilled: Int = 0, afterRecording: (@Sendable () async -> Int)? = nil)
    /// Another path stored this request's terminal result first (a k8s callback): there is nothing to record.
    case settledElsewhere
    /// Let go by a shutdown: the run goes on elsewhere (a k8s Job) and the next runner re-attaches to it.
    /// Nothing terminal is written.
    case letGo(DispatchResult)
}
