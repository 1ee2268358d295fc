import AgentProcess
import DispatchCore
import Foundation

/// Runs a request's verification commands (operator-written shell, so `/bin/sh -c` is right here) in the
/// sandbox, one after another, inside what is left of the budget; the first failure stops the phase.
package struct VerificationPhase: Sendable {
    let supervisor: ProcessSupervisor
    let killGraceMs: Int
    /// Whether the commands die with the runner (as its agents do).
    var diesWithRunner = false
    /// The namespaces the commands run in (the agent's view), or `nil`.
    var isolation: (bwrap: String, view: IsolationView)?

    /// A phase over `supervisor`.
    package init(
        supervisor: ProcessSupervisor,
        killGraceMs: Int,
        diesWithRunner: Bool,
        isolation: (bwrap: String, view: IsolationView)? = nil
    ) {
        self.isolation = isolation
        self.supervisor = supervisor
        self.killGraceMs = killGraceMs
        self.diesWithRunner = diesWithRunner
    }

    /// Longest `output` kept in the result.
    static let maxOutputBytes = 10_000

    /// Runs `commands` in order; the first failure ends the phase and is returned beside what they printed.
    package func run(
        _ commands: [String],
        workDir: String,
        logsDir: String,
        environment: [String: String],
        marker: String,
        deadline: Deadline,
        budgetMs: Int,
        token: CancelToken
    ) async -> (verification: Artifacts.Verification, failure: DispatchFailure?) {
        var output = ""
        var failure: DispatchFailure?
        for (index, command) in commands.enumerated() {
            let label = "verification command \(index + 1)/\(commands.count)"
            // Handed off: no command starts that nobody would supervise.
            if token.isDetached {
                failure = .message("\(label) was let go of: the runner is handing its runs off")
                break
            }
            let allowedMs = deadline.remainingMs
            guard allowedMs > 0 else {
                failure = .timedOut(.init(subject: "verification", elapsedMs: deadline.elapsedMs, budgetMs: budgetMs, moment: .before(label)))
                break
            }
            var spec = ProcessSpec(
                executablePath: "/bin/sh",
                argv: ["sh", "-c", command],
                environment: environment,
                workingDirectory: workDir,
                stdoutPath: "\(logsDir)/verify-\(index + 1).stdout.log",
                stderrPath: "\(logsDir)/verify-\(index + 1).stderr.log",
                marker: marker,
                diesWithRunner: diesWithRunner
            )
            spec.isolation = isolation
            let outcome: ProcessOutcome
            do {
                outcome = try await supervisor.run(
                    spec,
                    limits: limits(allowedMs: allowedMs, token: token)
                )
            } catch {
                failure = .message("\(label) could not start: \(error)")
                break
            }
            let stdout = LogFile.tail(spec.stdoutPath, maxBytes: Self.maxOutputBytes)
            let stderr = LogFile.tail(spec.stderrPath, maxBytes: Self.maxOutputBytes)
            output += "$ \(command)\n\(stdout)\(stderr)"
            switch outcome.ending {
            case .timedOut:
                failure = .timedOut(
                    .init(subject: "verification", elapsedMs: allowedMs, budgetMs: budgetMs, moment: .during(label), detail: ": \(command)")
                )
            case .cancelled:
                failure = token.reason.map { .cancelled(reason: $0) } ?? .message("cancelled during \(label)")
            case .letGo:
                failure = .message("\(label) was let go of: the runner is handing its runs off")
            default:
                if outcome.exitCode != 0 {
                    let how = outcome.exitCode.map { "exit \($0)" } ?? "signal \(outcome.signal ?? 0)"
                    failure = .message("\(label) failed: \(how): \(command)")
                }
            }
            output += "[\(outcome.exitCode.map { "exit \($0)" } ?? "signal \(outcome.signal ?? 0)")]\n"
            if failure != nil { break }
        }
        if output.utf8.count > Self.maxOutputBytes { output = String(output.utf8.suffix(Self.maxOutputBytes)) ?? output }
        return (Artifacts.Verification(commands: commands, success: failure == nil, output: output), failure)
    }

    /// What one command may take: `allowedMs`, the kill grace, and let go of with the run (`token`'s ``CancelToken/letGo``).
    func limits(allowedMs: Int, token: CancelToken) -> ProcessLimits {
        var limits = ProcessLimits(timeout: .milliseconds(allowedMs), killGrace: .milliseconds(killGraceMs))
        limits.letGo = token.letGo
        limits.stop = token.stopped
        return limits
    }
}
