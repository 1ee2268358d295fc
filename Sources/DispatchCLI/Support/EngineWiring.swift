import DispatchCore
import DispatchStore
import Dispatcher
import Execution
import Foundation
import Logging
import Sandbox

extension DispatchEngine {
    /// An engine with this machine's backends: host and local sandbox over one process supervisor, and
    /// `k8s` when the runner has a cluster.
    static func standard(
        configuration: DispatchConfiguration,
        store: any DispatchStore,
        logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        k8s: (any ExecutionBackend)? = nil
    ) -> DispatchEngine {
        let runner = AgentRunner(configuration: configuration, environment: environment)
        let backends = Backends(
            host: HostBackend(runner: runner),
            localSandbox: LocalSandboxBackend(runner: runner, ledger: SandboxRegistry(store: store)),
            k8s: k8s
        )
        return DispatchEngine(configuration: configuration, store: store, logger: logger, backends: backends)
    }
}
