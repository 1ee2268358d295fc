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

extension DispatchResult {
    /// Takes a job-runner's report (from the callback or the pod log): status, artifacts, Job, and the output
    /// or the error. The same report gives the same result whichever way it arrived.
    public mutating func take(_ report: SandboxExecutionResult) {
        status = report.status
        if let artifacts = report.artifacts { self.artifacts = artifacts }
        if let job = report.job { self.job = job }
        if let startedAt = report.startedAt, self.startedAt == nil { self.startedAt = startedAt }
        guard status.isTerminal else { return }
        if status == .completed {
            error = nil
            setResultText(report.output ?? "")
        } else {
            error = report.error ?? "job-runner reported \(report.state.rawValue) without a reason"
        }
    }
}
