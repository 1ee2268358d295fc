import ArgumentParser
import Dispatcher
import Execution
import Foundation
import Kube

/// `dispatch job-runner`: the k8s Job entrypoint (env contract of CONTRACT §5).
struct JobRunnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job-runner",
        abstract: "Run one request from the k8s Job environment; print and POST the result. Exit 0 completed, 1 failed, 143 cancelled."
    )

    @Option(help: "Working directory for the clone, sandbox and state (default: $DISPATCH_JOB_WORKDIR or /tmp/dispatch-job).")
    var workspace: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let workspace = self.workspace ?? environment["DISPATCH_JOB_WORKDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp/dispatch-job"
        let runner = JobRunner(environment: environment, workspace: absolute(workspace), logger: CLILogging.logger(level: .info))
        let token = CancelToken()
        let outcome = try await TraceExport.around(environment, logger: CLILogging.logger(level: .warning)) {
            try await SignalTrap.run(
                trapping: [.sigterm, .sigint],
                token: token,
                reason: { "job-runner received \($0); pod terminating" },
                work: { await runner.run(token: token) }
            )
        }
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }
}
