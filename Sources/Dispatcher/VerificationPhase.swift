import AgentProcess
import DispatchCore
import Foundation

/// Runs a request's verification commands (operator-written shell, so `/bin/sh -c` is right here) in the
/// sandbox, one after another, inside what is left of the budget; the first failure stops the phase.
struct VerificationPhase: Sendable {
    let supervisor: ProcessSupervisor
    let killGraceMs: Int
    /// Whether the commands die with the runner (as its agents do).
    var diesWithRunner = false

    /// Longest `output` kept in the result.
    static let maxOutputBytes = 10_000

    func run(
        _ commands: [String], workDir: String, logsDir: String, environment: [String: String], marker: String,
        deadline: Deadline, budgetMs: Int, token: CancelToken
    ) async -> (verification: Artifacts.Verification, error: String?) {
        var output = ""
        var failure: String?
        for (index, command) in commands.enumerated() {
            let label = "verification command \(index + 1)/\(commands.count)"
            let allowedMs = deadline.remainingMs
            guard allowedMs > 0 else {
                failure = "verification timed out after \(deadline.elapsedMs)ms (budget \(budgetMs)ms) before \(label) could start"
                break
            }
            let spec = ProcessSpec(
                executablePath: "/bin/sh", argv: ["sh", "-c", command], environment: environment, workingDirectory: workDir,
                stdoutPath: "\(logsDir)/verify-\(index + 1).stdout.log", stderrPath: "\(logsDir)/verify-\(index + 1).stderr.log",
                marker: marker, diesWithRunner: diesWithRunner)
            let outcome: ProcessOutcome
            do {
                outcome = try await supervisor.run(
                    spec, limits: ProcessLimits(timeout: .milliseconds(allowedMs), killGrace: .milliseconds(killGraceMs)))
            } catch {
                failure = "\(label) could not start: \(error)"
                break
            }
            let stdout = LogFile.tail(spec.stdoutPath, maxBytes: Self.maxOutputBytes)
            let stderr = LogFile.tail(spec.stderrPath, maxBytes: Self.maxOutputBytes)
            output += "$ \(command)\n\(stdout)\(stderr)"
            switch outcome.ending {
            case .timedOut:
                failure = "verification timed out after \(allowedMs)ms (budget \(budgetMs)ms) during \(label): \(command)"
            case .cancelled:
                failure = token.reason ?? "cancelled during \(label)"
            default:
                if outcome.exitCode != 0 {
                    let how = outcome.exitCode.map { "exit \($0)" } ?? "signal \(outcome.signal ?? 0)"
                    failure = "\(label) failed: \(how): \(command)"
                }
            }
            output += "[\(outcome.exitCode.map { "exit \($0)" } ?? "signal \(outcome.signal ?? 0)")]\n"
            if failure != nil { break }
        }
        if output.utf8.count > Self.maxOutputBytes { output = String(output.utf8.suffix(Self.maxOutputBytes)) ?? output }
        return (Artifacts.Verification(commands: commands, success: failure == nil, output: output), failure)
    }
}
