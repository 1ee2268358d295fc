import Foundation

/// The inbox result document (CONTRACT §2); also what HTTP routes return under `result`.
public struct DispatchResult: Codable, Sendable, Equatable {
    public var requestId: String
    public var sessionId: String?
    public var workflowId: String?
    public var storyId: String?
    public var status: DispatchStatus
    public var task: String
    public var tool: AgentTool
    public var agent: String?
    public var model: String?
    /// Final agent text, completed only, last 50,000 characters.
    public var result: String?
    /// Human-readable reason, failed or cancelled only.
    public var error: String?
    public var startedAt: String?
    public var updatedAt: String
    public var completedAt: String?
    public var durationMs: Int?
    public var executionMode: ExecutionMode
    public var sandboxBackend: SandboxBackend?
    public var attempts: [AttemptRecord]
    public var job: JobInfo?
    public var localSandbox: LocalSandboxInfo?
    public var artifacts: Artifacts?
    public var logs: LogInfo?
    /// The typed reason behind `error`, when this process decided it. Not stored and not compared: `error` is
    /// the durable form; this is what code (metrics) reads instead of matching the sentence.
    public var failure: DispatchFailure? {
        get { decided.value }
        set { decided.value = newValue }
    }
    private var decided = Transient<DispatchFailure>()

    enum CodingKeys: String, CodingKey {
        case requestId, sessionId, workflowId, storyId, status, task, tool, agent, model, result, error, startedAt, updatedAt
        case completedAt, durationMs, executionMode, sandboxBackend, attempts, job, localSandbox, artifacts, logs
    }

    /// Longest `result` text kept, in characters.
    public static let maxResultCharacters = 50_000

    /// A fresh result for `request` in `status`, stamped `now`.
    public init(request: DispatchRequest, status: DispatchStatus, now: Date = Date()) {
        self.requestId = request.requestId
        self.sessionId = request.sessionId
        self.workflowId = request.workflowId
        self.storyId = request.storyId
        self.status = status
        self.task = request.task
        self.tool = request.tool
        self.agent = request.agent
        self.model = request.model
        self.updatedAt = ISO8601.string(now)
        self.executionMode = request.executionMode
        self.sandboxBackend = request.executionMode == .sandbox ? (request.sandboxBackend ?? .local) : nil
        self.attempts = []
    }

    /// Ends the result `failed` (or `cancelled`, for a cancellation) with `failure`, its sentence in `error`.
    public mutating func fail(_ failure: DispatchFailure) {
        if case .cancelled = failure { status = .cancelled } else { status = .failed }
        self.failure = failure
        error = failure.description
        result = nil
    }

    /// Sets `result`, keeping only its last ``maxResultCharacters`` characters.
    public mutating func setResultText(_ text: String) {
        result = text.count > Self.maxResultCharacters ? String(text.suffix(Self.maxResultCharacters)) : text
    }
}

/// One agent process started for a dispatch.
public struct AttemptRecord: Codable, Sendable, Equatable {
    public var model: String?
    public var startedAt: String
    public var durationMs: Int
    public var exitCode: Int?
    public var signal: Int?
    public var timedOut: Bool
    public var error: String?

    public init(model: String?, startedAt: String, durationMs: Int, exitCode: Int?, signal: Int?, timedOut: Bool, error: String?) {
        self.model = model
        self.startedAt = startedAt
        self.durationMs = durationMs
        self.exitCode = exitCode
        self.signal = signal
        self.timedOut = timedOut
        self.error = error
    }

    enum CodingKeys: String, CodingKey { case model, startedAt, durationMs, exitCode, signal, timedOut, error }

    /// Encodes absent values as explicit `null`, as the contract shows them.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(durationMs, forKey: .durationMs)
        try c.encode(exitCode, forKey: .exitCode)
        try c.encode(signal, forKey: .signal)
        try c.encode(timedOut, forKey: .timedOut)
        try c.encode(error, forKey: .error)
    }
}

/// The Kubernetes Job that ran a k8s-backend dispatch.
public struct JobInfo: Codable, Sendable, Equatable {
    public var name: String
    public var namespace: String
    public var podName: String?

    public init(name: String, namespace: String, podName: String? = nil) {
        self.name = name
        self.namespace = namespace
        self.podName = podName
    }
}

/// Where a local sandbox lives and what it was made from.
public struct LocalSandboxInfo: Codable, Sendable, Equatable {
    public var sandboxId: String
    public var path: String
    public var repoPath: String
    public var workDir: String
    public var baseSha: String
    public var cleanupAfter: String?

    public init(sandboxId: String, path: String, repoPath: String, workDir: String, baseSha: String, cleanupAfter: String? = nil) {
        self.sandboxId = sandboxId
        self.path = path
        self.repoPath = repoPath
        self.workDir = workDir
        self.baseSha = baseSha
        self.cleanupAfter = cleanupAfter
    }
}

/// What a sandbox dispatch produced.
public struct Artifacts: Codable, Sendable, Equatable {
    public var headSha: String?
    public var touchedFiles: [String]
    public var patch: String?
    public var patchPath: String?
    public var patchTruncated: Bool?
    public var verification: Verification?
    /// Files in `touchedFiles` left out of the patch (too large), with their size and why.
    public var omittedFromPatch: [OmittedFile]?

    /// A file left out of the patch.
    public struct OmittedFile: Codable, Sendable, Equatable {
        public var path: String
        public var bytes: Int64
        public var reason: String

        public init(path: String, bytes: Int64, reason: String) {
            self.path = path
            self.bytes = bytes
            self.reason = reason
        }
    }

    public init(
        headSha: String? = nil,
        touchedFiles: [String] = [],
        patch: String? = nil,
        patchPath: String? = nil,
        patchTruncated: Bool? = nil,
        verification: Verification? = nil,
        omittedFromPatch: [OmittedFile]? = nil
    ) {
        self.headSha = headSha
        self.touchedFiles = touchedFiles
        self.patch = patch
        self.patchPath = patchPath
        self.patchTruncated = patchTruncated
        self.verification = verification
        self.omittedFromPatch = omittedFromPatch
    }

    /// Tolerates reports without `touchedFiles` (CONTRACT §3: missing optional parts of a callback are accepted).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        headSha = try container.decodeIfPresent(String.self, forKey: .headSha)
        touchedFiles = try container.decodeIfPresent([String].self, forKey: .touchedFiles) ?? []
        patch = try container.decodeIfPresent(String.self, forKey: .patch)
        patchPath = try container.decodeIfPresent(String.self, forKey: .patchPath)
        patchTruncated = try container.decodeIfPresent(Bool.self, forKey: .patchTruncated)
        verification = try container.decodeIfPresent(Verification.self, forKey: .verification)
        omittedFromPatch = try container.decodeIfPresent([OmittedFile].self, forKey: .omittedFromPatch)
    }

    /// The outcome of the request's verification commands.
    public struct Verification: Codable, Sendable, Equatable {
        public var commands: [String]
        public var success: Bool
        public var output: String

        public init(commands: [String], success: Bool, output: String) {
            self.commands = commands
            self.success = success
            self.output = output
        }
    }
}

/// Tails of the agent's output and where the whole of it is.
public struct LogInfo: Codable, Sendable, Equatable {
    public var stdout: String
    public var stderr: String
    public var stdoutPath: String
    public var stderrPath: String

    /// Bytes of each stream kept inline.
    public static let tailBytes = 10_000

    public init(stdout: String, stderr: String, stdoutPath: String, stderrPath: String) {
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }
}

/// A value carried along but neither encoded nor compared (two results differ by what they say, not by how a
/// process came to say it).
struct Transient<Value: Sendable>: Sendable, Equatable {
    var value: Value?

    static func == (lhs: Self, rhs: Self) -> Bool { true }
}
