import AgentProcess
import ArgumentParser
import DispatchCore
import DispatchServer
import Execution
import Foundation

/// `dispatch doctor`: what a runner started here would use — version, isolation after bubblewrap's self-check,
/// resource limits and store — without starting anything. Exit 2 when `DISPATCH_ISOLATION=bwrap` cannot work.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Report the version, isolation mode (after bubblewrap's self-check), resource limits and store a runner here would use."
    )

    @OptionGroup var state: StateOptions

    /// The report, one JSON object.
    struct Report: Encodable {
        var version: String
        var gitSha: String
        /// What `DISPATCH_ISOLATION` asked for.
        var isolationRequested: String
        /// What agents get: `bwrap` or `none` (as `GET /` reports it).
        var isolation: String
        var bwrap: String?
        /// What controls agents' network: `proxy` or `none` (as `GET /` reports it, CONTRACT §10).
        var egress: String
        /// The hosts agents may reach (`DISPATCH_EGRESS_ALLOW`), under the proxy.
        var egressAllow: [String]?
        var limits: String
        /// Who agents run as: `leased`, `root-unsafe` or `runner` (as `GET /` reports it).
        var agentUser: String
        /// Who runs agents in each mode (as `GET /` reports it).
        var agentUsers: [String: String]
        /// The uids leased to sandboxed agents, when they are.
        var agentUids: String?
        var store: String
        var stateDir: String
        /// Each agent CLI as a run would find it (CONTRACT §1).
        var clis: [CLIReport]
    }

    /// One agent CLI: where it is, what it says it is, the options a run would give it and whether it can.
    struct CLIReport: Encodable {
        var tool: String
        var path: String?
        var version: String?
        /// The options an attempt uses (in a git repository, without a model), as chosen for this runner's isolation.
        var options: [String]
        var usable: Bool
        var problem: String?
    }

    /// The CLIs of `configuration`, probed afresh (nothing remembered, nothing written to the state dir).
    static func clis(_ configuration: DispatchConfiguration, isolated: Bool) -> [CLIReport] {
        [AgentTool.codex, .claude, .pi].map { tool in
            let program = configuration.program(for: tool)
            let request = DispatchRequest(requestId: "doctor", task: "doctor", tool: tool)
            let options = CLIRequirements.chosen(request, isolated: isolated, outsideGitRepository: false)
            guard let path = ExecutableLocator.locate(program, searchPath: ProcessInfo.processInfo.environment["PATH"]) else {
                let hint = DispatchConfiguration.binVariable(for: tool).map { " (set \($0) to its path)" } ?? ""
                return CLIReport(tool: tool.rawValue, options: options, usable: false, problem: "\(program) was not found on PATH\(hint)")
            }
            let probe = CLIProbe.probe(path, tool: tool.rawValue, cacheDirectory: nil)
            let problem = CLIRequirements.problem(probe, request: request, isolated: isolated, outsideGitRepository: false)
            return CLIReport(
                tool: tool.rawValue,
                path: probe.path,
                version: probe.version,
                options: options,
                usable: problem == nil,
                problem: problem
            )
        }
    }

    func run() async throws {
        let configuration = state.configuration()
        // The self-check itself, not a remembered pass (and nothing written to the state dir).
        let isolation = try resolveIsolation(configuration, remembered: false)
        let egress = try resolveEgress(configuration, isolation: isolation)
        let policy = AgentRunner.agentUserPolicy(configuration, isolation: isolation.mode).0
        let limits = ResourceLimits(maxMemoryBytes: configuration.maxMemoryBytes, maxProcesses: configuration.maxProcesses)
        let report = Report(
            version: BuildInfo.version,
            gitSha: ServerInfo.gitSha,
            isolationRequested: configuration.isolation,
            isolation: isolation.mode.rawValue,
            bwrap: isolation.bwrap,
            egress: egress == nil ? "none" : "proxy",
            egressAllow: egress?.settings.allow.rules.map(\.description),
            limits: ResourcePolicy.detect(limits).mechanism.rawValue,
            agentUser: policy.report,
            agentUsers: policy.byMode,
            agentUids: policy == .runner ? nil : configuration.agentUids,
            store: configuration.databaseURL == nil ? "sqlite" : "postgres",
            stateDir: configuration.stateDir,
            clis: Self.clis(configuration, isolated: isolation.mode == .bwrap)
        )
        print(Output.json(report, pretty: true))
    }
}
