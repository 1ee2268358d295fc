import Foundation

/// `codex exec --full-auto --json [-m MODEL] [-s PROFILE] TASK` (TASK `-` reads stdin).
package struct CodexAdapter: AgentAdapter {
    package init() {}
    package var tool: AgentTool { .codex }
    package var detectsCompletion: Bool { true }

    /// `codex exec` refuses a work dir outside a git repository unless it is given this flag (CONTRACT §1).
    package static let skipGitRepoCheck = "--skip-git-repo-check"

    /// `invocation` for a work dir that is not inside a git repository.
    package static func outsideGitRepository(_ invocation: AgentInvocation) -> AgentInvocation {
        var invocation = invocation
        invocation.arguments.insert(skipGitRepoCheck, at: min(2, invocation.arguments.count))
        return invocation
    }

    package func invocation(request: DispatchRequest, task: String, model: String?, program: String) -> AgentInvocation {
        var arguments = ["exec", "--full-auto", "--json"]
        if let model { arguments += ["-m", model] }
        if let profile = request.sandbox { arguments += ["-s", profile.rawValue] }
        if AgentAdapters.taskNeedsStdin(task) {
            return AgentInvocation(program: program, arguments: arguments + ["-"], stdinText: task)
        }
        return AgentInvocation(program: program, arguments: arguments + [task])
    }

    /// Understands both `codex exec --json` event shapes: `item.completed`/`turn.completed` and `msg.task_complete`.
    package func parse(stdout: String) -> ParsedAgentOutput {
        let events = JSONLines.events(CodexEvent.self, in: stdout)
        guard !events.isEmpty else {
            let text = stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            return ParsedAgentOutput(finalText: text.isEmpty ? nil : text)
        }
        var last: String?
        var done = false
        var failure: String?
        for event in events {
            let type = event.type
            if type == "item.completed", let item = event.item, item.isAgentMessage {
                last = item.text ?? last
            } else if type == "turn.completed" {
                done = true
            } else if type == "turn.failed" || type == "error" {
                done = type == "turn.failed" || done
                failure = event.error?.message ?? event.message ?? "codex reported an error"
            } else if let msg = event.msg, let msgType = msg.type {
                if msgType == "agent_message" { last = msg.message ?? last }
                if msgType == "task_complete" {
                    done = true
                    last = msg.lastAgentMessage ?? last
                }
            }
        }
        return ParsedAgentOutput(finalText: last, sawFinalEvent: done, reportedError: failure)
    }
}
