import Foundation

/// The tools a dispatch can run.
package enum AgentTool: String, Codable, Sendable, CaseIterable {
    case codex, claude, pi, canary
}

/// Where the agent runs: in the given directory, or in a clean checkout.
package enum ExecutionMode: String, Codable, Sendable, CaseIterable {
    case host, sandbox
}

/// Which sandbox implementation materialises a sandbox-mode dispatch.
package enum SandboxBackend: String, Codable, Sendable, CaseIterable {
    case local, k8s
}

/// The agent permission profile passed through to agents that support one.
package enum SandboxProfile: String, Codable, Sendable, CaseIterable {
    case readOnly = "read-only"
    case workspaceWrite = "workspace-write"
    case dangerFullAccess = "danger-full-access"
}

/// The canary scenario a `tool: canary` request runs (CONTRACT §1).
package struct CanarySpec: Codable, Sendable, Equatable {
    /// The named scenarios.
    package enum Scenario: String, Codable, Sendable, CaseIterable {
        case sleepTimeout = "sleep-timeout"
        case orphanStderr = "orphan-stderr"
        /// The containment proof (`dispatch canary escape`): escapees the runner must not let live, and a look at
        /// what the runner must not let the agent see.
        case escape
    }

    /// Which scenario runs.
    package var scenario: Scenario
    /// `sleep-timeout`: how long the canary sleeps.
    package var sleepSeconds: Int
    /// `orphan-stderr`: how long the orphan keeps stderr open (the parent exits at once).
    package var orphanDelaySeconds: Int
    /// `orphan-stderr`: the parent's exit code.
    package var exitCode: Int

    /// Creates a canary spec with the contract's defaults.
    package init(
        scenario: Scenario = .sleepTimeout,
        sleepSeconds: Int = 120,
        orphanDelaySeconds: Int = 2,
        exitCode: Int = 7
    ) {
        self.scenario = scenario
        self.sleepSeconds = sleepSeconds
        self.orphanDelaySeconds = orphanDelaySeconds
        self.exitCode = exitCode
    }
}

/// A validated dispatch request (CONTRACT §1). Build one with ``RequestValidator``.
package struct DispatchRequest: Codable, Sendable, Equatable {
    /// What the request says, kept behind one reference (copied on write): every frame of a run that waits as long as
    /// its agent runs holds the request, and a held run costs what those frames take.
    struct Fields: Codable, Sendable, Equatable {
        var requestId: String
        var task: String
        var tool: AgentTool
        var canary: CanarySpec?
        /// Overall budget in seconds.
        var timeout: Double
        var cwd: String?
        var executionMode: ExecutionMode
        var sandboxBackend: SandboxBackend?
        var sandbox: SandboxProfile?
        var baseSha: String?
        var repoUrl: String?
        var branch: String?
        var model: String?
        var fallbackModels: [String]
        var agent: String?
        var readFiles: Bool?
        var verificationCommands: [String]
        var workflowId: String?
        var storyId: String?
        var sessionId: String?
        /// What the agent may reach on the network (CONTRACT §10); `nil`: the operator's allowlist.
        var network: NetworkRequest?
        /// The caller's W3C `traceparent` (the field, else the HTTP header): the dispatch's trace joins it (CONTRACT §11).
        var traceparent: String?
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

    package var canary: CanarySpec? {
        get { storage.fields.canary }
        _modify {
            unique()
            yield &storage.fields.canary
        }
    }

    package var timeout: Double {
        get { storage.fields.timeout }
        _modify {
            unique()
            yield &storage.fields.timeout
        }
    }

    package var cwd: String? {
        get { storage.fields.cwd }
        _modify {
            unique()
            yield &storage.fields.cwd
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

    package var sandbox: SandboxProfile? {
        get { storage.fields.sandbox }
        _modify {
            unique()
            yield &storage.fields.sandbox
        }
    }

    package var baseSha: String? {
        get { storage.fields.baseSha }
        _modify {
            unique()
            yield &storage.fields.baseSha
        }
    }

    package var repoUrl: String? {
        get { storage.fields.repoUrl }
        _modify {
            unique()
            yield &storage.fields.repoUrl
        }
    }

    package var branch: String? {
        get { storage.fields.branch }
        _modify {
            unique()
            yield &storage.fields.branch
        }
    }

    package var model: String? {
        get { storage.fields.model }
        _modify {
            unique()
            yield &storage.fields.model
        }
    }

    package var fallbackModels: [String] {
        get { storage.fields.fallbackModels }
        _modify {
            unique()
            yield &storage.fields.fallbackModels
        }
    }

    package var agent: String? {
        get { storage.fields.agent }
        _modify {
            unique()
            yield &storage.fields.agent
        }
    }

    package var readFiles: Bool? {
        get { storage.fields.readFiles }
        _modify {
            unique()
            yield &storage.fields.readFiles
        }
    }

    package var verificationCommands: [String] {
        get { storage.fields.verificationCommands }
        _modify {
            unique()
            yield &storage.fields.verificationCommands
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

    /// The caller's W3C `traceparent`: the dispatch's trace joins the caller's (CONTRACT §11).
    package var traceparent: String? {
        get { storage.fields.traceparent }
        _modify {
            unique()
            yield &storage.fields.traceparent
        }
    }

    /// What the agent may reach on the network (CONTRACT §10); `nil`: the operator's allowlist.
    package var network: NetworkRequest? {
        get { storage.fields.network }
        _modify {
            unique()
            yield &storage.fields.network
        }
    }

    package var sessionId: String? {
        get { storage.fields.sessionId }
        _modify {
            unique()
            yield &storage.fields.sessionId
        }
    }

    /// The default overall budget in seconds.
    package static let defaultTimeout: Double = 600

    /// Creates a request; callers outside tests should go through ``RequestValidator``.
    package init(
        requestId: String,
        task: String,
        tool: AgentTool,
        canary: CanarySpec? = nil,
        timeout: Double = DispatchRequest.defaultTimeout,
        cwd: String? = nil,
        executionMode: ExecutionMode = .host,
        sandboxBackend: SandboxBackend? = nil,
        sandbox: SandboxProfile? = nil,
        baseSha: String? = nil,
        repoUrl: String? = nil,
        branch: String? = nil,
        model: String? = nil,
        fallbackModels: [String] = [],
        agent: String? = nil,
        readFiles: Bool? = nil,
        verificationCommands: [String] = [],
        workflowId: String? = nil,
        storyId: String? = nil,
        sessionId: String? = nil
    ) {
        storage = Storage(
            Fields(
                requestId: requestId,
                task: task,
                tool: tool,
                canary: canary,
                timeout: timeout,
                cwd: cwd,
                executionMode: executionMode,
                sandboxBackend: sandboxBackend,
                sandbox: sandbox,
                baseSha: baseSha,
                repoUrl: repoUrl,
                branch: branch,
                model: model,
                fallbackModels: fallbackModels,
                agent: agent,
                readFiles: readFiles,
                verificationCommands: verificationCommands,
                workflowId: workflowId,
                storyId: storyId,
                sessionId: sessionId
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

    /// The canary scenario to run, with defaults applied (`tool: canary` without `canary` runs sleep-timeout).
    package var effectiveCanary: CanarySpec { canary ?? CanarySpec() }

    /// The models to try in order: `model` (or the agent's default, `nil`) then `fallbackModels`.
    package var modelAttempts: [String?] {
        [model] + fallbackModels.map { Optional($0) }
    }

    /// The budget in milliseconds.
    package var timeoutMs: Int { Int((timeout * 1000).rounded()) }
}
