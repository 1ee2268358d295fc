import AgentProcess
import DispatchCore
import Foundation
import Logging

/// What the process-running backends (host and local sandbox) share: the runner's configuration, its
/// environment (the base of every agent's) and one process supervisor.
package struct AgentRunner: Sendable {
    /// Paths, budgets and limits.
    package let configuration: DispatchConfiguration
    /// The runner's environment, filtered per agent by ``AgentEnvironment``.
    package let environment: [String: String]
    /// Spawns, waits for and ends processes.
    package let supervisor: ProcessSupervisor

    /// A runner with its own supervisor.
    package init(configuration: DispatchConfiguration, environment: [String: String], supervisor: ProcessSupervisor = ProcessSupervisor()) {
        self.configuration = configuration
        self.environment = environment
        self.supervisor = supervisor
    }

    /// Runs the agent attempts, recording `running` with each attempt's log paths (through `context.progress`)
    /// before it starts.
    package func runAgentPhase(_ input: AgentPhase.Input, context: BackendContext, result: DispatchResult) async -> AgentPhase.Outcome {
        let phase = AgentPhase(configuration: configuration, baseEnvironment: environment, supervisor: supervisor, logger: context.logger)
        return await phase.run(input, token: context.cancellation) { logs, attempts in
            var running = result
            running.logs = logs
            running.attempts = attempts
            running.updatedAt = ISO8601.string(Date())
            await context.progress(running)
        }
    }

    /// Ends every process still carrying the request's marker (a run whose runner died).
    package func endMarked(_ requestId: String) async -> Int {
        await supervisor.endLeftovers(groupId: nil, marker: AgentEnvironment.marker(requestId: requestId), grace: .milliseconds(200))
    }
}

extension DispatchResult {
    /// Copies the agent phase's outcome into the result.
    package mutating func apply(_ outcome: AgentPhase.Outcome) {
        attempts = outcome.attempts
        if let logs = outcome.logs { self.logs = logs }
        if outcome.status == .completed {
            status = .completed
            error = nil
            failure = nil
            setResultText(outcome.finalText ?? "")
        } else {
            status = outcome.status
            failure = outcome.failure
            error = outcome.failure?.description
        }
    }
}
