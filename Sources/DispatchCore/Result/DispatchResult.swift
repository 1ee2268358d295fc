import Foundation

/// The inbox result document (CONTRACT §2); also what HTTP routes return under `result`.
package struct DispatchResult: Codable, Sendable, Equatable {
    /// What the result says, kept behind one reference (copied on write): a result is passed down and held by every
    /// frame of a run that waits as long as its agent runs, where a 600-byte value in each frame was most of what a
    /// held run cost.
    struct Fields: Codable, Sendable, Equatable {
        var requestId: String
        var sessionId: String?
        var workflowId: String?
        var storyId: String?
        var status: DispatchStatus
        var task: String
        var tool: AgentTool
        var agent: String?
        var model: String?
        /// Final agent text, completed only, last 50,000 characters.
        var result: String?
        /// Human-readable reason, failed or cancelled only.
        var error: String?
        var startedAt: String?
        var updatedAt: String
        var completedAt: String?
        var durationMs: Int?
        var executionMode: ExecutionMode
        var sandboxBackend: SandboxBackend?
        var attempts: [AttemptRecord]
        var job: JobInfo?
        var localSandbox: LocalSandboxInfo?
        var artifacts: Artifacts?
        var logs: LogInfo?
        /// What the agent did on the network under the egress proxy (CONTRACT §10).
        var network: NetworkReport?
        /// The attempts' usage summed (CONTRACT §11).
        var usage: AgentUsage?

        enum CodingKeys: String, CodingKey {
            case requestId, sessionId, workflowId, storyId, status, task, tool, agent, model, result, error, startedAt, updatedAt
            case completedAt, durationMs, executionMode, sandboxBackend, attempts, job, localSandbox, artifacts, logs, network, usage
        }
    }

    /// The shared fields.
    final class Storage: @unchecked Sendable {
        var fields: Fields

        init(_ fields: Fields) { self.fields = fields }
    }

    private var storage: Storage

    /// Makes the fields this value's own before they change.
    private mutating func unique() {
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(storage.fields) }
    }

    package var requestId: String {
        get { storage.fields.requestId }
        _modify {
            unique()
            yield &storage.fields.requestId
        }
    }

    package var sessionId: String? {
        get { storage.fields.sessionId }
        _modify {
            unique()
            yield &storage.fields.sessionId
        }
    }

    package var workflowId: String? {
        get { storage.fields.workflowId }
        _modify {
            unique()
            yield &storage.fields.workflowId
        }
    }

    package var storyId: String? {
        get { storage.fields.storyId }
        _modify {
            unique()
            yield &storage.fields.storyId
        }
    }

    package var status: DispatchStatus {
        get { storage.fields.status }
        _modify {
            unique()
            yield &storage.fields.status
        }
    }

    package var task: String {
        get { storage.fields.task }
        _modify {
            unique()
            yield &storage.fields.task
        }
    }

    package var tool: AgentTool {
        get { storage.fields.tool }
        _modify {
            unique()
            yield &storage.fields.tool
        }
    }

    package var agent: String? {
        get { storage.fields.agent }
        _modify {
            unique()
            yield &storage.fields.agent
        }
    }

    package var model: String? {
        get { storage.fields.model }
        _modify {
            unique()
            yield &storage.fields.model
        }
    }

    package var result: String? {
        get { storage.fields.result }
        _modify {
            unique()
            yield &storage.fields.result
        }
    }

    package var error: String? {
        get { storage.fields.error }
        _modify {
            unique()
            yield &storage.fields.error
        }
    }

    package var startedAt: String? {
        get { storage.fields.startedAt }
        _modify {
            unique()
            yield &storage.fields.startedAt
        }
    }

    package var updatedAt: String {
        get { storage.fields.updatedAt }
        _modify {
            unique()
            yield &storage.fields.updatedAt
        }
    }

    package var completedAt: String? {
        get { storage.fields.completedAt }
        _modify {
            unique()
            yield &storage.fields.completedAt
        }
    }

    package var durationMs: Int? {
        get { storage.fields.durationMs }
        _modify {
            unique()
            yield &storage.fields.durationMs
        }
    }

    package var executionMode: ExecutionMode {
        get { storage.fields.executionMode }
        _modify {
            unique()
            yield &storage.fields.executionMode
        }
    }

    package var sandboxBackend: SandboxBackend? {
        get { storage.fields.sandboxBackend }
        _modify {
            unique()
            yield &storage.fields.sandboxBackend
        }
    }

    package var attempts: [AttemptRecord] {
        get { storage.fields.attempts }
        _modify {
            unique()
            yield &storage.fields.attempts
        }
    }

    package var job: JobInfo? {
        get { storage.fields.job }
        _modify {
            unique()
            yield &storage.fields.job
        }
    }

    package var localSandbox: LocalSandboxInfo? {
        get { storage.fields.localSandbox }
        _modify {
            unique()
            yield &storage.fields.localSandbox
        }
    }

    package var artifacts: Artifacts? {
        get { storage.fields.artifacts }
        _modify {
            unique()
            yield &storage.fields.artifacts
        }
    }

    /// What the agent did on the network under the egress proxy (CONTRACT §10).
    package var network: NetworkReport? {
        get { storage.fields.network }
        _modify {
            unique()
            yield &storage.fields.network
        }
    }

    /// The attempts' tokens and cost summed (CONTRACT §11); `nil` when no CLI said anything of them.
    package var usage: AgentUsage? {
        get { storage.fields.usage }
        _modify {
            unique()
            yield &storage.fields.usage
        }
    }

    package var logs: LogInfo? {
        get { storage.fields.logs }
        _modify {
            unique()
            yield &storage.fields.logs
        }
    }

    /// The typed reason behind `error`, when this process decided it. Not stored and not compared: `error` is
    /// the durable form; this is what code (metrics) reads instead of matching the sentence.
    package var failure: DispatchFailure? {
        get { decided.value }
        set { decided.value = newValue }
    }
    private var decided = Transient<DispatchFailure>()

    /// Longest `result` text kept, in characters.
    package static let maxResultCharacters = 50_000

    /// A fresh result for `request` in `status`, stamped `now`.
    package init(request: DispatchRequest, status: DispatchStatus, now: Date = Date()) {
        storage = Storage(
            Fields(
                requestId: request.requestId,
                sessionId: request.sessionId,
                workflowId: request.workflowId,
                storyId: request.storyId,
                status: status,
                task: request.task,
                tool: request.tool,
                agent: request.agent,
                model: request.model,
                updatedAt: ISO8601.string(now),
                executionMode: request.executionMode,
                sandboxBackend: request.executionMode == .sandbox ? (request.sandboxBackend ?? .local) : nil,
                attempts: []
            )
        )
    }

    package init(from decoder: any Decoder) throws {
        storage = Storage(try Fields(from: decoder))
    }

    package func encode(to encoder: any Encoder) throws {
        try storage.fields.encode(to: encoder)
    }

    package static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.fields == rhs.storage.fields
    }

    /// Ends the result `failed` (or `cancelled`, for a cancellation) with `failure`, its sentence in `error`.
    package mutating func fail(_ failure: DispatchFailure) {
        if case .cancelled = failure { status = .cancelled } else { status = .failed }
        self.failure = failure
        error = failure.description
        result = nil
    }

    /// Sets `result`, keeping only its last ``maxResultCharacters`` characters.
    /// `queued` → `running`, started at `startedAt` (a store's claim of a queued request).
    package mutating func markStarted(at startedAt: String) {
        status = .running
        self.startedAt = startedAt
        updatedAt = startedAt
    }

    /// Back to `queued`, not started (a claim given back).
    package mutating func markQueuedAgain() {
        status = .queued
        startedAt = nil
    }

    /// Ends a request that never started as `cancelled` with `reason`, now.
    package mutating func cancelBeforeStart(reason: String) {
        status = .cancelled
        error = reason
        completedAt = ISO8601.string(Date())
        updatedAt = completedAt!
        durationMs = 0
    }

    package mutating func setResultText(_ text: String) {
        result = text.count > Self.maxResultCharacters ? String(text.suffix(Self.maxResultCharacters)) : text
    }
}

/// One agent process started for a dispatch.
package struct AttemptRecord: Codable, Sendable, Equatable {
    package var model: String?
    package var startedAt: String
    package var durationMs: Int
    package var exitCode: Int?
    package var signal: Int?
    package var timedOut: Bool
    package var error: String?
    /// What the CLI reported that did not fail the attempt but may have emptied it (CONTRACT §1): a recovered stream
    /// error, a command its own sandbox refused (`sandbox: …`). Absent when there is none.
    package var warnings: [String]?
    /// The tokens and cost the CLI reported (CONTRACT §11), `null` figures where it said nothing; every attempt that
    /// ran has one, one that never started none.
    package var usage: AgentUsage?

    package init(model: String?, startedAt: String, durationMs: Int, exitCode: Int?, signal: Int?, timedOut: Bool, error: String?) {
        self.model = model
        self.startedAt = startedAt
        self.durationMs = durationMs
        self.exitCode = exitCode
        self.signal = signal
        self.timedOut = timedOut
        self.error = error
    }

    enum CodingKeys: String, CodingKey { case model, startedAt, durationMs, exitCode, signal, timedOut, error, warnings, usage }

    /// The prefix of a warning about a command the CLI's own sandbox refused (counted in `/metrics`).
    package static let sandboxWarningPrefix = "sandbox: "

    /// Encodes absent values as explicit `null`, as the contract shows them.
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(durationMs, forKey: .durationMs)
        try c.encode(exitCode, forKey: .exitCode)
        try c.encode(signal, forKey: .signal)
        try c.encode(timedOut, forKey: .timedOut)
        try c.encode(error, forKey: .error)
        try c.encodeIfPresent(warnings, forKey: .warnings)
        try c.encodeIfPresent(usage, forKey: .usage)
    }
}

/// The Kubernetes Job that ran a k8s-backend dispatch.
package struct JobInfo: Codable, Sendable, Equatable {
    package var name: String
    package var namespace: String
    package var podName: String?

    package init(name: String, namespace: String, podName: String? = nil) {
        self.name = name
        self.namespace = namespace
        self.podName = podName
    }
}

/// Where a local sandbox lives and what it was made from.
package struct LocalSandboxInfo: Codable, Sendable, Equatable {
    package var sandboxId: String
    package var path: String
    package var repoPath: String
    package var workDir: String
    package var baseSha: String
    package var cleanupAfter: String?

    package init(sandboxId: String, path: String, repoPath: String, workDir: String, baseSha: String, cleanupAfter: String? = nil) {
        self.sandboxId = sandboxId
        self.path = path
        self.repoPath = repoPath
        self.workDir = workDir
        self.baseSha = baseSha
        self.cleanupAfter = cleanupAfter
    }
}

/// What a sandbox dispatch produced.
package struct Artifacts: Codable, Sendable, Equatable {
    package var headSha: String?
    package var touchedFiles: [String]
    package var patch: String?
    package var patchPath: String?
    package var patchTruncated: Bool?
    package var verification: Verification?
    /// Files in `touchedFiles` left out of the patch (too large), with their size and why.
    package var omittedFromPatch: [OmittedFile]?
    /// How many paths were touched, when more than `touchedFiles` lists (it keeps the first 10,000 in order).
    package var touchedFilesCount: Int?
    /// `true` when `touchedFiles` lists only the first of `touchedFilesCount` paths.
    package var touchedFilesTruncated: Bool?

    /// A file left out of the patch.
    package struct OmittedFile: Codable, Sendable, Equatable {
        package var path: String
        package var bytes: Int64
        package var reason: String

        package init(path: String, bytes: Int64, reason: String) {
            self.path = path
            self.bytes = bytes
            self.reason = reason
        }
    }

    package init(
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
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        headSha = try container.decodeIfPresent(String.self, forKey: .headSha)
        touchedFiles = try container.decodeIfPresent([String].self, forKey: .touchedFiles) ?? []
        patch = try container.decodeIfPresent(String.self, forKey: .patch)
        patchPath = try container.decodeIfPresent(String.self, forKey: .patchPath)
        patchTruncated = try container.decodeIfPresent(Bool.self, forKey: .patchTruncated)
        verification = try container.decodeIfPresent(Verification.self, forKey: .verification)
        omittedFromPatch = try container.decodeIfPresent([OmittedFile].self, forKey: .omittedFromPatch)
        touchedFilesCount = try container.decodeIfPresent(Int.self, forKey: .touchedFilesCount)
        touchedFilesTruncated = try container.decodeIfPresent(Bool.self, forKey: .touchedFilesTruncated)
    }

    /// The outcome of the request's verification commands.
    package struct Verification: Codable, Sendable, Equatable {
        package var commands: [String]
        package var success: Bool
        package var output: String

        package init(commands: [String], success: Bool, output: String) {
            self.commands = commands
            self.success = success
            self.output = output
        }
    }
}

/// Tails of the agent's output and where the whole of it is.
package struct LogInfo: Codable, Sendable, Equatable {
    package var stdout: String
    package var stderr: String
    package var stdoutPath: String
    package var stderrPath: String

    /// Bytes of each stream kept inline.
    package static let tailBytes = 10_000

    package init(stdout: String, stderr: String, stdoutPath: String, stderrPath: String) {
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
