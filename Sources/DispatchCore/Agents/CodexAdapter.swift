import Foundation

/// `codex exec --json [--skip-git-repo-check] <sandbox flag> [-m MODEL] TASK` (TASK `-` reads stdin), CONTRACT §1: the
/// sandbox flag is `--sandbox PROFILE` (default `workspace-write`), or `--dangerously-bypass-approvals-and-sandbox`
/// inside this runner's own isolation, where codex's own sandbox cannot nest. Never `--full-auto` (codex 0.147 removed it).
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

    /// The sandbox flag for an attempt inside this runner's isolation: the namespace is the sandbox, and the profile
    /// is enforced by its binds (`read-only`: the work dir read-only).
    package static let bypassSandbox = "--dangerously-bypass-approvals-and-sandbox"

    /// `invocation` for an attempt inside this runner's own isolation: `--sandbox PROFILE` becomes
    /// ``bypassSandbox`` (never both).
    package static func underRunnerIsolation(_ invocation: AgentInvocation) -> AgentInvocation {
        var invocation = invocation
        if let index = invocation.arguments.firstIndex(of: "--sandbox"), index + 1 < invocation.arguments.count {
            invocation.arguments.replaceSubrange(index...(index + 1), with: [bypassSandbox])
        }
        return invocation
    }

    package func invocation(request: DispatchRequest, task: String, model: String?, program: String) -> AgentInvocation {
        var arguments = ["exec", "--json", "--sandbox", (request.sandbox ?? .workspaceWrite).rawValue]
        if let model { arguments += ["-m", model] }
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
        // Judged by the final event (CONTRACT §1): `turn.completed` is success even after a recovered `error`
        // ("Reconnecting... 1/5"), `turn.failed` is failure with its message; an `error` counts only when no turn
        // event follows it.
        var failure: String?
        var lastError: String?
        var recovered: [String] = []
        var warnings: [String] = []
        var usage: AgentUsage?
        for event in events {
            let type = event.type
            if type == "item.completed", let refusal = event.item?.sandboxRefusal {
                warnings.append(AttemptRecord.sandboxWarningPrefix + refusal)
            }
            if type == "item.completed", let item = event.item, item.isAgentMessage {
                last = item.text ?? last
            } else if type == "turn.completed" {
                done = true
                usage = event.usage?.agentUsage ?? usage
                failure = nil
                lastError = nil
                warnings += recovered.map { "recovered: \($0)" }
                recovered = []
            } else if type == "turn.failed" {
                done = true
                failure = event.error?.message ?? event.message ?? "codex reported a failed turn"
            } else if type == "error" {
                lastError = event.message ?? event.error?.message ?? "codex reported an error"
                recovered.append(lastError ?? "")
            } else if let msg = event.msg, let msgType = msg.type {
                if msgType == "agent_message" { last = msg.message ?? last }
                if msgType == "task_complete" {
                    done = true
                    last = msg.lastAgentMessage ?? last
                }
            }
        }
        var parsed = ParsedAgentOutput(finalText: last, sawFinalEvent: done, reportedError: failure ?? lastError)
        parsed.warnings = Array(warnings.prefix(20))
        parsed.usage = usage
        return parsed
    }
}
