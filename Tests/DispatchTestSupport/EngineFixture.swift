import AgentProcess
import DispatchCore
import DispatchStore
import Dispatcher
import Execution
import Foundation
import Logging
import PostgresStore
import Sandbox
import Testing

/// The stores the same tests run against.
package enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres
    package var testDescription: String { rawValue }
}

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
        let configuration = Self.configuration(in: dir, killGraceMs: killGraceMs, completionGraceMs: completionGraceMs)
        let store = try SQLiteDispatchStore(
            stateDir: configuration.stateDir,
            inboxDir: configuration.inboxDir,
            leaseSeconds: configuration.leaseSeconds
        )
        self.init(dir: dir, configuration: configuration, store: store, environment: environment, k8s: k8s, logHandler: logHandler)
    }

    private init(
        dir: TempDir,
        configuration: DispatchConfiguration,
        store: any DispatchStore,
        environment: [String: String],
        k8s: (any ExecutionBackend)?,
        logHandler: (@Sendable (String) -> any LogHandler)?
    ) {
        self.dir = dir
        var logger = logHandler.map { Logger(label: "test", factory: $0) } ?? Logger(label: "test")
        if logHandler == nil { logger.logLevel = .warning }
        let env = ProcessInfo.processInfo.environment.merging(["IS_SANDBOX": "1"]) { $1 }.merging(environment) { $1 }
        engine = .standard(configuration: configuration, store: store, logger: logger, environment: env, isolation: Self.isolation, k8s: k8s)
    }

    /// An engine on a store of `kind` (PostgreSQL: a fresh database of the test server), or `nil` when that kind
    /// cannot run here (an issue is recorded when PostgreSQL is required).
    package static func on(
        _ kind: StoreKind,
        killGraceMs: Int = 1000,
        completionGraceMs: Int = 500,
        environment: [String: String] = [:]
    ) async throws -> EngineFixture? {
        guard kind == .postgres else {
            return try EngineFixture(killGraceMs: killGraceMs, completionGraceMs: completionGraceMs, environment: environment)
        }
        guard let url = try TestDatabase.fresh("engine") else {
            if TestDatabase.required { Issue.record("DISPATCH_POSTGRES_TESTS=required but no DISPATCH_TEST_DATABASE_URL") }
            return nil
        }
        let dir = TempDir("engine-pg")
        let configuration = Self.configuration(in: dir, killGraceMs: killGraceMs, completionGraceMs: completionGraceMs)
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let store = try await PostgresDispatchStore.open(
            url: try DatabaseURL(url),
            stateDir: configuration.stateDir,
            inboxDir: configuration.inboxDir,
            leaseSeconds: configuration.leaseSeconds,
            logger: quiet,
            running: dir.keepRunning
        )
        return EngineFixture(dir: dir, configuration: configuration, store: store, environment: environment, k8s: nil, logHandler: nil)
    }

    /// The fixture's configuration: a state dir in `dir`, the fake agents.
    static func configuration(in dir: TempDir, killGraceMs: Int, completionGraceMs: Int) -> DispatchConfiguration {
        var configuration = DispatchConfiguration(environment: [:])
        configuration.stateDir = Self.stateDir(in: dir)
        configuration.defaultWorkdir = dir.path
        configuration.codexBin = TestPaths.fake("codex")
        configuration.claudeBin = TestPaths.fake("claude")
        configuration.piBin = TestPaths.fake("pi")
        configuration.killGraceMs = killGraceMs
        configuration.completionGraceMs = completionGraceMs
        configuration.agentUser = TestPaths.hostAgentUser
        // Claude Code as root (this machine, CI) needs IS_SANDBOX=1 passed through, as an operator would.
        configuration.agentEnvPassthrough = ["IS_SANDBOX"]
        return configuration
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
        var backends = Backends(
            host: HostBackend(runner: runner),
            localSandbox: LocalSandboxBackend(runner: runner, ledger: SandboxRegistry(store: store)),
            k8s: k8s
        )
        backends.localRunsOutliveRunner = runner.runsOutliveRunner
        backends.agentUsers = runner.agentUsers
        return DispatchEngine(configuration: configuration, store: store, logger: logger, backends: backends)
    }
}
