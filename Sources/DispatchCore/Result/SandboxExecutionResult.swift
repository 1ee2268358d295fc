/// What a k8s job-runner reports (CONTRACT §5): printed between result markers and POSTed to the callback URL.
public struct SandboxExecutionResult: Codable, Sendable, Equatable {
    /// `running`, `completed`, `failed` or `cancelled`.
    public enum State: String, Codable, Sendable {
        case running, completed, failed, cancelled
    }

    public var requestId: String
    public var state: State
    public var startedAt: String?
    public var completedAt: String?
    public var durationMs: Int?
    public var backend: String
    public var job: JobInfo?
    public var artifacts: Artifacts?
    public var error: String?
    public var output: String?

    public init(
        requestId: String, state: State, startedAt: String? = nil, completedAt: String? = nil, durationMs: Int? = nil,
        backend: String = "k8s", job: JobInfo? = nil, artifacts: Artifacts? = nil, error: String? = nil, output: String? = nil
    ) {
        self.requestId = requestId
        self.state = state
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.durationMs = durationMs
        self.backend = backend
        self.job = job
        self.artifacts = artifacts
        self.error = error
        self.output = output
    }

    /// The dispatch status this state maps to.
    public var status: DispatchStatus { DispatchStatus(rawValue: state.rawValue) ?? .failed }
}
