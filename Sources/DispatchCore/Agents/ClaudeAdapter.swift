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
        // Each model call's usage, by its message id (the last print of it wins): what a run ended before its `result`
        // (timed out, cancelled) used — often the most expensive — without its cost, which only `result` gives.
        var calls: [String: AgentUsage] = [:]
        for event in events {
            if event.type == "assistant", let message = event.message, let id = message.id, let usage = message.apiUsage {
                calls[id] = usage.agentUsage
            }
            if event.type == "result" {
                let text = event.result
                // Failure by `is_error` or an error subtype (CONTRACT §1), with its own text and the subtype.
                let errorSubtype = event.subtype.flatMap { $0.hasPrefix("error") ? $0 : nil }
                if event.isError || errorSubtype != nil {
                    let reason = [text, errorSubtype.map { "(\($0))" }].compactMap { $0 }.joined(separator: " ")
                    var parsed = ParsedAgentOutput(
                        finalText: text,
                        sawFinalEvent: true,
                        reportedError: reason.isEmpty ? "claude reported an error" : reason
                    )
                    parsed.usage = event.agentUsage
                    return parsed
                }
                var parsed = ParsedAgentOutput(finalText: text ?? lastAssistant, sawFinalEvent: true)
                parsed.usage = event.agentUsage
                return parsed
            }
            if event.type == "assistant", let text = event.message?.text {
                lastAssistant = text
            }
        }
        var parsed = ParsedAgentOutput(finalText: lastAssistant)
        parsed.usage = AgentUsage.sum(Array(calls.values))
        return parsed
    }
}
