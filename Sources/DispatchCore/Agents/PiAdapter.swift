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
        // Each model call's usage, once: a message is printed again in `turn_end` and `agent_end`.
        var usages: [AgentUsage] = []
        for event in JSONLines.events(PiEvent.self, in: stdout) {
            switch event.type {
            case "message_end", "turn_end":
                if let message = event.message { take(message, into: &last, failure: &failure) }
                if event.type == "message_end", event.message?.role == "assistant", let usage = event.message?.usage {
                    usages.append(usage.agentUsage)
                }
            case "agent_end":
                for message in event.messages ?? [] { take(message, into: &last, failure: &failure) }
                // The whole run's messages once each: what an early `message_end` said may be out of the parsed window.
                let ended = (event.messages ?? []).filter { $0.role == "assistant" }.compactMap(\.usage).map(\.agentUsage)
                if !ended.isEmpty { usages = ended }
            default:
                continue
            }
        }
        var parsed = ParsedAgentOutput(finalText: last, sawFinalEvent: false, reportedError: last == nil ? failure : nil)
        parsed.usage = AgentUsage.sum(usages)
        return parsed
    }

    private func take(_ message: AgentMessage, into last: inout String?, failure: inout String?) {
        guard message.role == "assistant" else { return }
        if message.stopReason == "error" {
            failure = message.errorMessage ?? "pi reported an error"
        }
        if let text = message.text, !text.isEmpty { last = text }
    }
}
