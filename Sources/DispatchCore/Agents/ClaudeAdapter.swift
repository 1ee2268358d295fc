import Foundation

/// `claude -p TASK --dangerously-skip-permissions --output-format stream-json --verbose [--model M]`.
package struct ClaudeAdapter: AgentAdapter {
    package init() {}
    package var tool: AgentTool { .claude }
    package var detectsCompletion: Bool { true }

    package func invocation(request: DispatchRequest, task: String, model: String?, program: String) -> AgentInvocation {
        let viaStdin = AgentAdapters.taskNeedsStdin(task)
        var arguments = viaStdin ? ["-p"] : ["-p", task]
        arguments += ["--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose"]
        if let model { arguments += ["--model", model] }
        return AgentInvocation(program: program, arguments: arguments, stdinText: viaStdin ? task : nil)
    }

    /// The final `{"type":"result"}` event carries the answer (or `is_error`).
    package func parse(stdout: String) -> ParsedAgentOutput {
        let events = JSONLines.events(ClaudeEvent.self, in: stdout)
        guard !events.isEmpty else {
            let text = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            return ParsedAgentOutput(finalText: text.isEmpty ? nil : text)
        }
        var lastAssistant: String?
        for event in events {
            if event.type == "result" {
                let text = event.result
                if event.isError {
                    return ParsedAgentOutput(finalText: text, sawFinalEvent: true, reportedError: text ?? "claude reported an error")
                }
                return ParsedAgentOutput(finalText: text ?? lastAssistant, sawFinalEvent: true)
            }
            if event.type == "assistant", let text = event.message?.text {
                lastAssistant = text
            }
        }
        return ParsedAgentOutput(finalText: lastAssistant)
    }
}
