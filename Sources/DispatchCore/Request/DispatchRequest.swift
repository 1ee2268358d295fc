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
    package var requestId: String
    package var task: String
    package var tool: AgentTool
    package var canary: CanarySpec?
    /// Overall budget in seconds.
    package var timeout: Double
    package var cwd: String?
    package var executionMode: ExecutionMode
    package var sandboxBackend: SandboxBackend?
    package var sandbox: SandboxProfile?
    package var baseSha: String?
    package var repoUrl: String?
    package var branch: String?
    package var model: String?
    package var fallbackModels: [String]
    package var agent: String?
    package var readFiles: Bool?
    package var verificationCommands: [String]
    package var workflowId: String?
    package var storyId: String?
    package var sessionId: String?

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
        self.requestId = requestId
        self.task = task
        self.tool = tool
        self.canary = canary
        self.timeout = timeout
        self.cwd = cwd
        self.executionMode = executionMode
        self.sandboxBackend = sandboxBackend
        self.sandbox = sandbox
        self.baseSha = baseSha
        self.repoUrl = repoUrl
        self.branch = branch
        self.model = model
        self.fallbackModels = fallbackModels
        self.agent = agent
        self.readFiles = readFiles
        self.verificationCommands = verificationCommands
        self.workflowId = workflowId
        self.storyId = storyId
        self.sessionId = sessionId
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
