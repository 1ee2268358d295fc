import AgentProcess
import ArgumentParser
import DispatchCore
import DispatchStore
import Dispatcher
import Egress
import Execution
import Foundation
import Logging
import Sandbox

extension DispatchEngine {
    /// An engine with this machine's backends: host and local sandbox over one process supervisor, and
    /// `k8s` when the runner has a cluster. `isolation` is what ``resolveIsolation(_:)`` found.
    static func standard(
        configuration: DispatchConfiguration,
        store: any DispatchStore,
        logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        isolation: (mode: IsolationMode, bwrap: String?) = (.none, nil),
        k8s: (any ExecutionBackend)? = nil,
        warmPool: WarmPool? = nil,
        egress: EgressService? = nil
    ) -> DispatchEngine {
        // The places hidden from agents exist before any agent runs: one a host-mode agent created first (a symlink,
        // a planted tree) would not be hidden, it would be the agent's.
        for directory in [configuration.inboxDir, configuration.sandboxRoot] {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let limits = ResourceLimits(maxMemoryBytes: configuration.maxMemoryBytes, maxProcesses: configuration.maxProcesses)
        let resources = ResourcePolicy.detect(limits)
        var runner = AgentRunner(
            configuration: configuration,
            environment: environment,
            isolation: isolation,
            supervisor: ProcessSupervisor(resources: resources)
        )
        runner.egress = isolation.mode == .bwrap ? egress : nil
        var backends = Backends(
            host: HostBackend(runner: runner),
            localSandbox: LocalSandboxBackend(runner: runner, ledger: SandboxRegistry(store: store), pool: warmPool),
            k8s: k8s
        )
        backends.localRunsOutliveRunner = runner.runsOutliveRunner
        backends.limits = resources.mechanism.rawValue
        backends.agentUsers = runner.agentUsers
        if case .leased(let fallback) = runner.agentUsers, fallback?.uid == 0 {
            logger.warning("DISPATCH_AGENT_USER=root: host-mode agents in root-owned work dirs run as root (an explicit, unsafe opt-out)")
        }
        return DispatchEngine(configuration: configuration, store: store, logger: logger, backends: backends)
    }
}

/// The warm pool of `serve` (`DISPATCH_WARM_SANDBOXES` > 0), made once it holds its state dir (the pool starts by
/// removing what an earlier one left); a one-shot `dispatch run` would only pay for it.
func warmPool(_ configuration: DispatchConfiguration, store: any DispatchStore, logger: Logger) -> WarmPool? {
    guard configuration.warmSandboxes > 0 else { return nil }
    return WarmPool(
        size: configuration.warmSandboxes,
        sandboxRoot: configuration.sandboxRoot,
        registry: SandboxRegistry(store: store),
        logger: logger
    )
}

/// The isolation a runner that starts agents uses: `DISPATCH_ISOLATION` after bubblewrap's self-check (a pass
/// remembered in the state dir unless `remembered` is false). Asked for but unusable is a usage error (exit 2),
/// saying why.
func resolveIsolation(_ configuration: DispatchConfiguration, remembered: Bool = true) throws -> (mode: IsolationMode, bwrap: String?) {
    if let problem = AgentRunner.checkAgentUsers(configuration) { throw ValidationError(problem) }
    let isolation: (mode: IsolationMode, bwrap: String?)
    do {
        isolation = try Bubblewrap.resolve(configuration.isolation, cacheDirectory: remembered ? configuration.stateDir : nil)
    } catch {
        throw ValidationError(error.description)
    }
    if let problem = AgentRunner.checkAgentUserTools(isolation: isolation.mode) { throw ValidationError(problem) }
    return isolation
}

/// The egress proxy of a runner whose agents are isolated (CONTRACT §10), `nil` without isolation: the operator's
/// `DISPATCH_EGRESS_ALLOW`/`DISPATCH_EGRESS_ALLOW_PRIVATE` and the bridge program checked at start-up, a bad one a
/// usage error (exit 2) naming the variable.
func resolveEgress(
    _ configuration: DispatchConfiguration,
    isolation: (mode: IsolationMode, bwrap: String?),
    environment: [String: String] = ProcessInfo.processInfo.environment
) throws -> EgressService? {
    let settings: EgressSettings
    do {
        settings = try EgressSettings(environment: environment)
    } catch {
        throw ValidationError(error.description)
    }
    guard isolation.mode == .bwrap else { return nil }
    guard let bridge = MonitorSpec.locateProgram(environment: environment) else {
        throw ValidationError(
            "isolated agents leave their network namespace through dispatch-monitor --bridge, which was not found next to dispatch "
                + "(or at DISPATCH_MONITOR_BIN): install it beside dispatch"
        )
    }
    return EgressService(settings: settings, stateDir: configuration.stateDir, bridgeProgram: bridge)
}
