import Foundation

/// What a k8s job-runner reports (CONTRACT §5): printed between result markers and POSTed to the callback URL.
package struct SandboxExecutionResult: Codable, Sendable, Equatable {
    /// `running`, `completed`, `failed` or `cancelled`.
    package enum State: String, Codable, Sendable {
        case running, completed, failed, cancelled
    }

    package var requestId: String
    package var state: State
    package var startedAt: String?
    package var completedAt: String?
    package var durationMs: Int?
    package var backend: String
    package var job: JobInfo?
    package var artifacts: Artifacts?
    package var error: String?
    package var output: String?
    /// The pod's attempts' tokens and cost summed (CONTRACT §11).
    package var usage: AgentUsage?

    package init(
        requestId: String,
        state: State,
        startedAt: String? = nil,
        completedAt: String? = nil,
        durationMs: Int? = nil,
        backend: String = "k8s",
        job: JobInfo? = nil,
        artifacts: Artifacts? = nil,
        error: String? = nil,
        output: String? = nil
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

    enum CodingKeys: String, CodingKey {
        case requestId, state, startedAt, completedAt, durationMs, backend, job, artifacts, error, output, usage
    }

    /// Tolerates reports without `backend` (always k8s) or any optional part.
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        requestId = try container.decode(String.self, forKey: .requestId)
        state = try container.decode(State.self, forKey: .state)
        startedAt = try container.decodeIfPresent(String.self, forKey: .startedAt)
        completedAt = try container.decodeIfPresent(String.self, forKey: .completedAt)
        durationMs = try container.decodeIfPresent(Int.self, forKey: .durationMs)
        backend = try container.decodeIfPresent(String.self, forKey: .backend) ?? "k8s"
        job = try container.decodeIfPresent(JobInfo.self, forKey: .job)
        artifacts = try container.decodeIfPresent(Artifacts.self, forKey: .artifacts)
        error = try container.decodeIfPresent(String.self, forKey: .error)
        output = try container.decodeIfPresent(String.self, forKey: .output)
        usage = try container.decodeIfPresent(AgentUsage.self, forKey: .usage)
    }

    /// Decodes an untrusted callback body (`POST /internal/agent-result`): the document and its `requestId`
    /// are checked; an error names the field at fault.
    package static func decodeCallback(_ data: Data) throws(RequestValidationError) -> SandboxExecutionResult {
        let report: SandboxExecutionResult
        do {
            report = try JSONDecoder().decode(SandboxExecutionResult.self, from: data)
        } catch let error as DecodingError {
            throw RequestValidationError(field: CallbackDecoding.field(of: error), message: CallbackDecoding.describe(error))
        } catch {
            throw RequestValidationError(field: "body", message: "is not a SandboxExecutionResult: \(error)")
        }
        try RequestValidator.validateRequestId(report.requestId)
        return report
    }

    /// The dispatch status this state maps to.
    package var status: DispatchStatus { DispatchStatus(rawValue: state.rawValue) ?? .failed }
}

extension DispatchResult {
    /// Takes a job-runner's report (from the callback or the pod log): status, artifacts, Job, and the output
    /// or the error. The same report gives the same result whichever way it arrived.
    package mutating func take(_ report: SandboxExecutionResult) {
        status = report.status
        if let artifacts = report.artifacts { self.artifacts = artifacts }
        if let job = report.job { self.job = job }
        if let startedAt = report.startedAt, self.startedAt == nil { self.startedAt = startedAt }
        if let usage = report.usage { self.usage = usage }
        guard status.isTerminal else { return }
        if status == .completed {
            error = nil
            setResultText(report.output ?? "")
        } else {
            error = report.error ?? "job-runner reported \(report.state.rawValue) without a reason"
        }
    }
}

/// Words for a callback body that does not decode.
enum CallbackDecoding {
    static func field(of error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            return (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "body" : path
        @unknown default:
            return "body"
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound: "is required"
        case .typeMismatch(let type, _): "must be of type \(type)"
        case .valueNotFound: "must not be null"
        case .dataCorrupted(let context): "is not valid: \(context.debugDescription)"
        @unknown default: "is not valid"
        }
    }
}
