/// How to start one agent attempt: program, arguments and what goes on stdin.
package struct AgentInvocation: Sendable, Equatable {
    /// The program name (looked up on PATH) or an absolute path.
    package var program: String
    /// Arguments after the program name.
    package var arguments: [String]
    /// Text fed to the agent on stdin (through a file, never a pipe); `nil` means `/dev/null`.
    package var stdinText: String?

    package init(program: String, arguments: [String], stdinText: String? = nil) {
        self.program = program
        self.arguments = arguments
        self.stdinText = stdinText
    }
}

/// What an agent's output says about its run.
package struct ParsedAgentOutput: Sendable, Equatable {
    /// The final answer text, if the output holds one.
    package var finalText: String?
    /// Whether the output holds the agent's final "done" event (used to end agents that hang after finishing).
    package var sawFinalEvent: Bool
    /// An error the agent itself reported in its final event.
    package var reportedError: String?
    /// What it reported that did not fail the run (``AttemptRecord/warnings``).
    package var warnings: [String] = []
    /// The tokens and cost it reported (CONTRACT §11); `nil` when it said nothing of them.
    package var usage: AgentUsage?

    package init(finalText: String?, sawFinalEvent: Bool = false, reportedError: String? = nil) {
        self.finalText = finalText
        self.sawFinalEvent = sawFinalEvent
        self.reportedError = reportedError
    }
}

/// Builds argv for one tool and reads its output. Pure: no I/O.
package protocol AgentAdapter: Sendable {
    /// The tool this adapter drives.
    var tool: AgentTool { get }
    /// Whether the adapter can tell from the output that the agent finished, so a hung process can be ended as completed.
    var detectsCompletion: Bool { get }
    /// Whether a run that exits 0 with no final text counts as failed.
    var requiresOutput: Bool { get }
    /// The command line for one attempt with `model`.
    func invocation(request: DispatchRequest, task: String, model: String?, program: String) -> AgentInvocation
    /// Reads the agent's stdout.
    func parse(stdout: String) -> ParsedAgentOutput
}

extension AgentAdapter {
    /// Default: agents finish by exiting.
    package var detectsCompletion: Bool { false }
    /// Default: an empty answer from a clean exit is accepted.
    package var requiresOutput: Bool { false }
}

/// The adapters by tool.
package enum AgentAdapters {
    /// Largest task passed as one argv string; longer tasks (Linux caps one string at 128 KiB) go through stdin.
    package static let maxArgvTaskBytes = 100_000

    /// Whether `task` must go through stdin: too long for argv, or it would be read as an option.
    package static func taskNeedsStdin(_ task: String) -> Bool {
        task.utf8.count > maxArgvTaskBytes || task.hasPrefix("-")
    }

    /// The adapter for `tool`.
    package static func adapter(for tool: AgentTool) -> any AgentAdapter {
        switch tool {
        case .codex: CodexAdapter()
        case .claude: ClaudeAdapter()
        case .pi: PiAdapter()
        case .canary: CanaryAdapter()
        }
    }
}
