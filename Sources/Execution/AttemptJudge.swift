import AgentProcess
import DispatchCore
import Foundation

/// Turns how an agent process ended, and what it printed, into success or a typed failure.
struct AttemptJudge: Sendable {
    let tool: String
    /// `agent attempt 2/3`.
    let label: String
    let budgetMs: Int
    let maxLogBytes: Int64
    /// The run's memory limit, for the words of an out-of-memory kill.
    var maxMemoryBytes: Int64?

    /// `nil` when the attempt completed; otherwise why not.
    func failure(
        of process: ProcessOutcome,
        parsed: ParsedAgentOutput,
        adapter: any AgentAdapter,
        allowedMs: Int,
        stderrTail: String,
        token: CancelToken
    ) -> DispatchFailure? {
        switch process.ending {
        case .cancelled:
            return .cancelled(reason: token.reason ?? "cancelled during \(label)")
        case .timedOut:
            return .timedOut(.init(subject: tool, elapsedMs: allowedMs, budgetMs: budgetMs, moment: .during(label)))
        case .outputLimit:
            return .outputLimit(tool: tool, stream: process.exceededStream ?? "output", limitBytes: maxLogBytes, during: label)
        case .runnerLost:
            return .runnerLost(reason: "runner lost: no runner adopted the run within its lease during \(label); its monitor ended it")
        case .letGo:
            return .message("\(label) was let go of: the runner is handing its runs off")
        case .completedByOutput:
            return parsed.reportedError.map { .message("\(tool) reported an error during \(label): \($0)") }
        case .exited:
            return exited(process, parsed: parsed, adapter: adapter, stderrTail: stderrTail, token: token)
        }
    }

    private func exited(
        _ process: ProcessOutcome,
        parsed: ParsedAgentOutput,
        adapter: any AgentAdapter,
        stderrTail: String,
        token: CancelToken
    ) -> DispatchFailure? {
        if let reason = token.reason { return .cancelled(reason: reason) }
        if process.outOfMemory, let limit = maxMemoryBytes { return .outOfMemory(tool: tool, limitBytes: limit, during: label) }
        if let code = process.exitCode, code != 0 {
            // The CLI's own reason, from its final event, when stderr says nothing useful (codex prints only "Reading
            // additional input from stdin..." there; the reason is its `turn.failed` on stdout).
            let stderrLines = Self.lastLines(stderrTail)
            let reason = parsed.reportedError.map { reported in Self.saysNothing(stderrLines) ? reported : "\(stderrLines)\n\(reported)" }
            return .exited(tool: tool, code: code, stderrTail: reason ?? stderrLines, during: label)
        }
        if let signal = process.signal { return .signaled(tool: tool, signal: signal, during: label) }
        if let reported = parsed.reportedError { return .message("\(tool) reported an error during \(label): \(reported)") }
        if adapter.requiresOutput, (parsed.finalText ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return .message("\(tool) exited 0 but produced no final answer during \(label)")
        }
        return nil
    }

    /// Whether stderr holds nothing that explains a failure: empty, or only a CLI's notices.
    static func saysNothing(_ stderr: String) -> Bool {
        stderr.split(whereSeparator: \.isNewline).allSatisfy { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            return text.isEmpty || text.hasPrefix("Reading additional input from stdin")
        }
    }

    /// The last few lines of stderr, at most 2,000 characters, for error messages.
    static func lastLines(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = trimmed.split(whereSeparator: \.isNewline).suffix(5).joined(separator: "\n")
        return lines.count > 2000 ? String(lines.suffix(2000)) : lines
    }
}
