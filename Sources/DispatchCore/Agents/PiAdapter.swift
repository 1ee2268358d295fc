/// `pi -p --no-session --mode json --no-extensions [--no-tools] [--models M]`, prompt on stdin.
package struct PiAdapter: AgentAdapter {
    package init() {}
    package var tool: AgentTool { .pi }
    package var requiresOutput: Bool { true }

    package func invocation(request: DispatchRequest, task: String, model: String?, program: String) -> AgentInvocation {
        var arguments = ["-p", "--no-session", "--mode", "json", "--no-extensions"]
        if request.readFiles != true { arguments.append("--no-tools") }
        if let model { arguments += ["--models", model] }
        return AgentInvocation(program: program, arguments: arguments, stdinText: task)
    }

    /// The final text is the last assistant message of `message_end`, `turn_end` or `agent_end` events.
    package func parse(stdout: String) -> ParsedAgentOutput {
        var last: String?
        var failure: String?
        for event in JSONLines.events(PiEvent.self, in: stdout) {
            switch event.type {
            case "message_end", "turn_end":
                if let message = event.message { take(message, into: &last, failure: &failure) }
            case "agent_end":
                for message in event.messages ?? [] { take(message, into: &last, failure: &failure) }
            default:
                continue
            }
        }
        return ParsedAgentOutput(finalText: last, sawFinalEvent: false, reportedError: last == nil ? failure : nil)
    }

    private func take(_ message: AgentMessage, into last: inout String?, failure: inout String?) {
        guard message.role == "assistant" else { return }
        if message.stopReason == "error" {
            failure = message.errorMessage ?? "pi reported an error"
        }
        if let text = message.text, !text.isEmpty { last = text }
    }
}
