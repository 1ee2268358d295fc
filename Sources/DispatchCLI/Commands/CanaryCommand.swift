import AgentProcess
import ArgumentParser
import DispatchCore
import Dispatcher
import Execution
import Foundation

/// `dispatch canary`: model-free proofs of the runner's guarantees on a live install.
struct CanaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "canary",
        abstract: "Prove the runner's guarantees without any model.",
        subcommands: [OrphanStderr.self, SleepTimeout.self, Escape.self]
    )

    /// Runs a canary request over HTTP (`client`) or in this process, and how long it took end to end.
    static func dispatch(
        _ request: DispatchRequest,
        client: RemoteClient?,
        state: StateOptions
    ) async throws -> (result: DispatchResult?, wallMs: Int) {
        let clock = ContinuousClock()
        let start = clock.now
        let result: DispatchResult? =
            if let client {
                try await client.dispatchAndAwait(request, timeout: .seconds(120))
            } else {
                try await state.engine(runsAgents: true).runOnce(request, token: CancelToken()).result
            }
        return (result, Int((clock.now - start).milliseconds))
    }

    /// The capture proof: a parent exits 7 while its child keeps stderr open.
    struct OrphanStderr: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "orphan-stderr",
            abstract: "Check that a result is written promptly when an orphan keeps stderr open, and that the orphan is killed."
        )

        @OptionGroup var state: StateOptions
        @OptionGroup var remote: ServerOptions
        @Option(help: "How long the orphan holds stderr, in seconds (the parent exits at once).") var delay = 2

        func run() async throws {
            let client = try remote.client(state: state)
            let requestId = "canary-orphan-stderr-\(Int(Date().timeIntervalSince1970))-\(UInt16.random(in: 0...UInt16.max))"
            let request = CanaryChecks.orphanStderrRequest(requestId: requestId, cwd: NSTemporaryDirectory(), delaySeconds: delay)
            let (result, wallMs) = try await CanaryCommand.dispatch(request, client: client, state: state)
            // The stderr log as it stands: over HTTP from the service, else the local file.
            let path = result?.logs?.stderrPath
            let stderr: @Sendable () async -> String = {
                if let client {
                    return (try? await client.request(.GET, "/internal/agent-logs/\(requestId)?stream=stderr").text) ?? ""
                }
                return path.map { LogFile.tail($0, maxBytes: 64 * 1024) } ?? ""
            }
            let report = CanaryReport(
                scenario: "orphan-stderr",
                requestId: requestId,
                wallMs: wallMs,
                checks: await CanaryChecks.orphanStderr(result, wallMs: wallMs, delaySeconds: delay, stderr: stderr),
                result: result
            )
            print(Output.json(report, pretty: true))
            if !report.ok { throw DispatchExit.failed }
        }
    }

    /// The containment proof (CONTRACT §7): escapees die with their dispatch; the agent sees nothing of the runner.
    struct Escape: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "escape",
            abstract: "Check that a double-forked, setsid, environment-cleared grandchild dies with its dispatch, and that the agent "
                + "cannot read the token or the state dir. Exit 0 only if every check holds."
        )

        @OptionGroup var state: StateOptions
        @OptionGroup var remote: ServerOptions

        func run() async throws {
            let client = try remote.client(state: state)
            let requestId = "canary-escape-\(Int(Date().timeIntervalSince1970))-\(UInt16.random(in: 0...UInt16.max))"
            let request = CanaryChecks.escapeRequest(requestId: requestId, cwd: NSTemporaryDirectory())
            let (result, wallMs) = try await CanaryCommand.dispatch(request, client: client, state: state)
            let checks = await CanaryChecks.escape(result, requestId: requestId)
            let report = CanaryReport(scenario: "escape", requestId: requestId, wallMs: wallMs, checks: checks, result: result)
            print(Output.json(report, pretty: true))
            if !report.ok { throw DispatchExit.failed }
        }
    }
}
