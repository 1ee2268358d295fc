import AgentProcess
import DispatchCore
import DispatchStore
import Dispatcher
import Execution
import Foundation
import Logging
import Sandbox

/// A dispatch engine over a temp state dir, with the fake agents configured.
package struct EngineFixture: Sendable {
    package let dir: TempDir
    package let engine: DispatchEngine
    package var configuration: DispatchConfiguration { engine.configuration }

    package init(
        killGraceMs: Int = 1000,
        completionGraceMs: Int = 500,
        environment: [String: String] = [:],
        k8s: (any ExecutionBackend)? = nil,
        logHandler: (@Sendable (String) -> any LogHandler)? = nil,
        dir: TempDir = TempDir("engine")
    ) throws {
        self.dir = dir
        var configuration = DispatchConfiguration(environment: [:])
        configuration.stateDir = Self.stateDir(in: dir)
        configuration.defaultWorkdir = dir.path
        configuration.codexBin = TestPaths.fake("codex")
        configuration.claudeBin = TestPaths.fake("claude")
        configuration.piBin = TestPaths.fake("pi")
        configuration.killGraceMs = killGraceMs
        configuration.completionGraceMs = completionGraceMs
        // Claude Code as root (this machine, CI) needs IS_SANDBOX=1 passed through, as an operator would.
        configuration.agentEnvPassthrough = ["IS_SANDBOX"]
        let store = try SQLiteDispatchStore(
            stateDir: configuration.stateDir,
            inboxDir: configuration.inboxDir,
            leaseSeconds: configuration.leaseSeconds
        )
        var logger = logHandler.map { Logger(label: "test", factory: $0) } ?? Logger(label: "test")
        if logHandler == nil { logger.logLevel = .warning }
        let env = ProcessInfo.processInfo.environment.merging(["IS_SANDBOX": "1"]) { $1 }.merging(environment) { $1 }
        engine = .standard(configuration: configuration, store: store, logger: logger, environment: env, isolation: Self.isolation, k8s: k8s)
    }

    /// The isolation the engines of the tests run with: `DISPATCH_ISOLATION` of the test process (default `auto`:
    /// bubblewrap when it works here), as a runner resolves it.
    package static let isolation: (mode: IsolationMode, bwrap: String?) =
        (try? Bubblewrap.resolve(ProcessInfo.processInfo.environment["DISPATCH_ISOLATION"] ?? "auto")) ?? (.none, nil)

    /// Where an engine over `dir` keeps its state (for a backend built before the fixture).
    package static func stateDir(in dir: TempDir) -> String { dir.child("state") }

    /// A request with a unique id for `tool` and `task`.
    package func request(_ tool: AgentTool, _ task: String, timeout: Double = 60) -> DispatchRequest {
        DispatchRequest(requestId: "t-\(UUID().uuidString.prefix(12))", task: task, tool: tool, timeout: timeout, cwd: dir.path)
    }

    /// Runs `request` in-process to its terminal result.
    package func run(_ request: DispatchRequest) async throws -> DispatchResult {
        try await engine.runOnce(request, token: CancelToken()).result
    }

    /// The inbox document of `requestId`, decoded.
    package func inbox(_ requestId: String) throws -> DispatchResult {
        try JSONDecoder().decode(DispatchResult.self, from: Data(contentsOf: URL(fileURLWithPath: engine.store.inboxPath(requestId))))
    }
}

extension DispatchEngine {
    /// An engine with the host and local sandbox backends over one supervisor, as the CLI wires it.
    package static func standard(
        configuration: DispatchConfiguration,
        store: any DispatchStore,
        logger: Logger,
        environment: [String: String],
        isolation: (mode: IsolationMode, bwrap: String?) = (.none, nil),
        k8s: (any ExecutionBackend)? = nil
    ) -> DispatchEngine {
        let runner = AgentRunner(configuration: configuration, environment: environment, isolation: isolation)
        let backends = Backends(
            host: HostBackend(runner: runner),
            localSandbox: LocalSandboxBackend(runner: runner, ledger: SandboxRegistry(store: store)),
            k8s: k8s
        )
        return DispatchEngine(configuration: configuration, store: store, logger: logger, backends: backends)
    }
}
