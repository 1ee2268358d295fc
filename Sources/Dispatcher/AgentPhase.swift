import AgentProcess
import DispatchCore
import Foundation
import Logging

/// The agent phase of a dispatch: one process per attempt (`model`, then each fallback), all inside the one budget.
struct AgentPhase: Sendable {
    /// Where and how the agent runs.
    struct Input: Sendable {
        var request: DispatchRequest
        /// The text the agent receives (a sandbox adds its preamble).
        var task: String
        var workDir: String
        var logsDir: String
        var extraEnv: [String: String]
        /// The agent phase's own deadline (the overall one, less any reserve for later phases).
        var deadline: Deadline
        /// The overall budget, for messages.
        var budgetMs: Int
        /// Leave the last attempt's leftovers (an orphan holding stderr) for the caller to end once the result is
        /// written (host mode: the result never waits for them). Earlier attempts' leftovers are ended before the next.
        var sweepAfterResult = false
    }

    /// What the attempts came to.
    struct Outcome: Sendable {
        var status: DispatchStatus
        var finalText: String?
        var error: String?
        var attempts: [AttemptRecord] = []
        var logs: LogInfo?
        var timedOut = false
        /// Process groups the runner ended plus leftovers it killed.
        var processesKilled = 0
        /// The last attempt's process group, whose leftovers the caller ends after writing the result.
        var pendingSweep: pid_t?
    }

    /// How much of the end of stdout the completion probe reads.
    static let probeTailBytes = 256 * 1024

    /// Shortest time an attempt is started with.
    static let minimumAttemptMs = 1000

    let configuration: DispatchConfiguration
    let baseEnvironment: [String: String]
    let supervisor: ProcessSupervisor
    let logger: Logger

    /// How much of the end of stdout is parsed for the final text and events.
    static let parseWindowBytes = 8 << 20

    /// Whether `path` is inside a git work tree (a `.git` directory or file in it or a parent).
    static func isInsideGitRepository(_ path: String) -> Bool {
        var current = URL(fileURLWithPath: path).standardizedFileURL.path
        while true {
            if FileManager.default.fileExists(atPath: "\(current)/.git") { return true }
            let parent = (current as NSString).deletingLastPathComponent
            if parent == current || parent.isEmpty { return false }
            current = parent
        }
    }

    /// Runs the attempts. `attemptStarting` is awaited before each process starts (to record `running` with log paths).
    func run(_ input: Input, token: CancelToken, attemptStarting: @Sendable (LogInfo, [AttemptRecord]) async -> Void) async -> Outcome {
        let request = input.request
        let adapter = AgentAdapters.adapter(for: request.tool)
        let models = request.modelAttempts
        let env = AgentEnvironment.build(
            request: request, base: baseEnvironment, extraNames: configuration.agentEnvPassthrough, extras: input.extraEnv)
        let program = configuration.program(for: request.tool)
        var outcome = Outcome(status: .failed)

        guard let executable = ExecutableLocator.locate(program, searchPath: env["PATH"]) else {
            let hint = DispatchConfiguration.binVariable(for: request.tool).map { " (set \($0) to its path)" } ?? ""
            outcome.error = "\(request.tool.rawValue) executable \"\(program)\" was not found on PATH\(hint)"
            return outcome
        }
        // Claude Code as root refuses --dangerously-skip-permissions unless IS_SANDBOX=1 (CONTRACT §1): say so
        // before spawning rather than after a confusing exit.
        if request.tool == .claude, geteuid() == 0, env["IS_SANDBOX"] != "1" {
            outcome.error = "claude refuses --dangerously-skip-permissions when run as root unless IS_SANDBOX=1: run the runner as "
                + "another user, or pass IS_SANDBOX=1 through (DISPATCH_AGENT_ENV=IS_SANDBOX with IS_SANDBOX=1 set for the runner)"
            return outcome
        }
        let outsideGitRepository = request.tool == .codex && !Self.isInsideGitRepository(input.workDir)
        var stdinPath: String?
        if adapter.invocation(request: request, task: input.task, model: models[0], program: executable).stdinText != nil {
            stdinPath = "\(input.logsDir)/task.txt"
            do {
                try FileManager.default.createDirectory(atPath: input.logsDir, withIntermediateDirectories: true)
                try Data(input.task.utf8).write(to: URL(fileURLWithPath: stdinPath!))
            } catch {
                outcome.error = "cannot write the task file \(stdinPath!): \(error)"
                return outcome
            }
        }

        for (index, model) in models.enumerated() {
            let label = "agent attempt \(index + 1)/\(models.count)"
            if Task.isCancelled || token.reason != nil {
                outcome.status = .cancelled
                outcome.error = token.reason ?? "cancelled"
                return outcome
            }
            let allowedMs = input.deadline.remainingMs
            guard allowedMs >= Self.minimumAttemptMs else {
                outcome.timedOut = true
                outcome.error = "\(request.tool.rawValue) timed out after \(input.deadline.elapsedMs)ms (budget \(input.budgetMs)ms): "
                    + "only \(allowedMs)ms left, not enough to start \(label)"
                    + (outcome.error.map { "; previous attempt: \($0)" } ?? "")
                return outcome
            }
            var invocation = adapter.invocation(request: request, task: input.task, model: model, program: executable)
            if outsideGitRepository { invocation = CodexAdapter.outsideGitRepository(invocation) }
            let logs = LogInfo(
                stdout: "", stderr: "",
                stdoutPath: "\(input.logsDir)/attempt-\(index + 1).stdout.log",
                stderrPath: "\(input.logsDir)/attempt-\(index + 1).stderr.log")
            await attemptStarting(logs, outcome.attempts)
            let spec = ProcessSpec(
                executablePath: executable, argv: [invocation.program] + invocation.arguments, environment: env,
                workingDirectory: input.workDir, stdinPath: invocation.stdinText == nil ? nil : stdinPath,
                stdoutPath: logs.stdoutPath, stderrPath: logs.stderrPath,
                marker: AgentEnvironment.marker(requestId: request.requestId), diesWithRunner: configuration.agentsDieWithRunner)
            let limits = ProcessLimits(
                timeout: .milliseconds(allowedMs), killGrace: .milliseconds(configuration.killGraceMs),
                completionGrace: .milliseconds(configuration.completionGraceMs), maxLogBytes: configuration.maxLogBytes)
            let stdoutPath = logs.stdoutPath
            var probe: (@Sendable () -> Bool)?
            if adapter.detectsCompletion {
                // The final event is the last thing an agent prints: read the tail, not the whole (possibly huge) log.
                probe = { @Sendable in adapter.parse(stdout: LogFile.tail(stdoutPath, maxBytes: Self.probeTailBytes)).sawFinalEvent }
            }
            logger.debug("starting \(label)", metadata: ["model": "\(model ?? "default")", "pid.argv0": "\(executable)"])

            if let previous = outcome.pendingSweep {
                outcome.processesKilled += await supervisor.endLeftovers(groupId: previous, marker: spec.marker, grace: supervisor.leftoverGrace)
                outcome.pendingSweep = nil
            }
            let process: ProcessOutcome
            do {
                process = try await supervisor.run(spec, limits: limits, finalEventSeen: probe, sweepLeftovers: !input.sweepAfterResult)
                if input.sweepAfterResult { outcome.pendingSweep = process.pid }
            } catch {
                outcome.error = "\(request.tool.rawValue) could not be started for \(label): \(error)"
                outcome.attempts.append(
                    AttemptRecord(model: model, startedAt: ISO8601.string(Date()), durationMs: 0, exitCode: nil, signal: nil,
                                  timedOut: false, error: outcome.error))
                continue
            }
            outcome.processesKilled += process.leftoversKilled + (process.ending == .exited ? 0 : 1)
            outcome.logs = LogInfo(
                stdout: LogFile.tail(logs.stdoutPath, maxBytes: LogInfo.tailBytes),
                stderr: LogFile.tail(logs.stderrPath, maxBytes: LogInfo.tailBytes),
                stdoutPath: logs.stdoutPath, stderrPath: logs.stderrPath)
            // A bounded window from the end: the final events are the last thing an agent prints, and memory must not
            // grow with the output (a flood before them, a 50 MB line included, is skipped).
            let parsed = adapter.parse(stdout: LogFile.tail(logs.stdoutPath, maxBytes: Self.parseWindowBytes))
            let verdict = judge(process, parsed: parsed, adapter: adapter, label: label, allowedMs: allowedMs,
                                budgetMs: input.budgetMs, stderrTail: outcome.logs?.stderr ?? "", token: token)
            outcome.attempts.append(
                AttemptRecord(model: model, startedAt: ISO8601.string(process.startedAt), durationMs: process.durationMs,
                              exitCode: process.exitCode.map(Int.init), signal: process.signal.map(Int.init),
                              timedOut: process.ending == .timedOut, error: verdict.error))
            logger.info("\(label) ended", metadata: [
                "ending": "\(process.ending.rawValue)", "exit": "\(process.exitCode.map(String.init) ?? "-")",
                "durationMs": "\(process.durationMs)", "leftoversKilled": "\(process.leftoversKilled)",
            ])
            switch verdict.status {
            case .completed:
                outcome.status = .completed
                outcome.finalText = parsed.finalText ?? ""
                outcome.error = nil
                return outcome
            case .cancelled:
                outcome.status = .cancelled
                outcome.error = verdict.error
                return outcome
            default:
                outcome.error = verdict.error
                if process.ending == .timedOut {
                    outcome.timedOut = true
                    return outcome
                }
                // A flooding agent ends the dispatch: another attempt would flood the same way.
                if process.ending == .outputLimit { return outcome }
            }
        }
        if models.count > 1, let last = outcome.error {
            outcome.error = "all \(models.count) agent attempts failed; last: \(last)"
        }
        return outcome
    }

    /// Turns a process ending into completed / failed / cancelled with a reason in words.
    private func judge(
        _ process: ProcessOutcome, parsed: ParsedAgentOutput, adapter: any AgentAdapter, label: String, allowedMs: Int,
        budgetMs: Int, stderrTail: String, token: CancelToken
    ) -> (status: DispatchStatus, error: String?) {
        let tool = adapter.tool.rawValue
        switch process.ending {
        case .cancelled:
            return (.cancelled, token.reason ?? "cancelled during \(label)")
        case .timedOut:
            return (.failed, "\(tool) timed out after \(allowedMs)ms (budget \(budgetMs)ms) during \(label)")
        case .outputLimit:
            return (.failed, "\(tool) \(process.exceededStream ?? "output") exceeded the log limit of \(configuration.maxLogBytes) bytes during \(label)")
        case .completedByOutput:
            if let reported = parsed.reportedError { return (.failed, "\(tool) reported an error during \(label): \(reported)") }
            return (.completed, nil)
        case .exited:
            if token.reason != nil { return (.cancelled, token.reason) }
            if let code = process.exitCode, code != 0 {
                let tail = Self.lastLines(stderrTail)
                return (.failed, "\(tool) failed during \(label): exit \(code)" + (tail.isEmpty ? "" : ": \(tail)"))
            }
            if let signal = process.signal {
                return (.failed, "\(tool) was killed by signal \(signal) (\(Self.signalName(signal))) during \(label)")
            }
            if let reported = parsed.reportedError { return (.failed, "\(tool) reported an error during \(label): \(reported)") }
            if adapter.requiresOutput, (parsed.finalText ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                return (.failed, "\(tool) exited 0 but produced no final answer during \(label)")
            }
            return (.completed, nil)
        }
    }

    /// The last few lines of stderr, at most 2,000 characters, for error messages.
    static func lastLines(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = trimmed.split(whereSeparator: \.isNewline).suffix(5).joined(separator: "\n")
        return lines.count > 2000 ? String(lines.suffix(2000)) : lines
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGBUS: "SIGBUS"
        case SIGHUP: "SIGHUP"
        case SIGPIPE: "SIGPIPE"
        default: "signal \(signal)"
        }
    }
}
