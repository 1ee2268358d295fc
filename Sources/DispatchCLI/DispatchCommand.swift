import AgentProcess
import ArgumentParser
import Foundation

/// The `dispatch` command: runs coding agents safely and reports exactly what happened.
package struct DispatchCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "dispatch",
        abstract: "Run coding agents (codex, claude, pi) on request, within a budget, and report exactly what happened.",
        version: BuildInfo.version,
        subcommands: [
            RunCommand.self, StatusCommand.self, AwaitCommand.self, ListCommand.self, LogsCommand.self, CanaryCommand.self,
            CancelCommand.self, SandboxesCommand.self, ServeCommand.self, DoctorCommand.self, K8sCommand.self, JobRunnerCommand.self,
            StoreCommand.self,
        ]
    )

    package init() {}

    /// Prints the version as `--version` does and exits 0.
    package static func printVersion() -> Never {
        print(configuration.version)
        Foundation.exit(0)
    }

    /// Parses argv, runs the command and exits with the contract's codes: 0 ok, 1 failed, 2 usage, 130 cancelled.
    package static func run() async {
        // Everything the runner writes is private; agents keep the operator's umask.
        ProcessUmask.makeRunnerPrivate()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await CommandScope.run { try await asyncCommand.run() }
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                let message = fullMessage(for: error)
                if !message.isEmpty { print(message) }
                Foundation.exit(0)
            }
            let message = message(for: error)
            if !message.isEmpty { FileHandle.standardError.write(Data("dispatch: \(message)\n".utf8)) }
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// Exit codes of CONTRACT §4.
enum DispatchExit {
    static let failed = ExitCode(1)
    static let usage = ExitCode(2)
    static let cancelled = ExitCode(130)
}
