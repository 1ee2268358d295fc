import DispatchCore
import DispatchStore
import Dispatcher
import Foundation
import Logging

/// A dispatch engine over a temp state dir, with the fake agents configured.
public struct EngineFixture: Sendable {
    public let dir: TempDir
    public let engine: DispatchEngine
    public var configuration: DispatchConfiguration { engine.configuration }

    public init(
        killGraceMs: Int = 1000, completionGraceMs: Int = 500, environment: [String: String] = [:], k8s: (any RemoteSandboxBackend)? = nil,
        logHandler: (@Sendable (String) -> any LogHandler)? = nil
    ) throws {
        dir = TempDir("engine")
        var configuration = DispatchConfiguration(environment: [:])
        configuration.stateDir = dir.child("state")
        configuration.defaultWorkdir = dir.path
        configuration.codexBin = TestPaths.fake("codex")
        configuration.claudeBin = TestPaths.fake("claude")
        configuration.piBin = TestPaths.fake("pi")
        configuration.killGraceMs = killGraceMs
        configuration.completionGraceMs = completionGraceMs
        // Claude Code as root (this machine, CI) needs IS_SANDBOX=1 passed through, as an operator would.
        configuration.agentEnvPassthrough = ["IS_SANDBOX"]
        let store = try DispatchStore(stateDir: configuration.stateDir, inboxDir: configuration.inboxDir, leaseSeconds: configuration.leaseSeconds)
        var logger = logHandler.map { Logger(label: "test", factory: $0) } ?? Logger(label: "test")
        if logHandler == nil { logger.logLevel = .warning }
        let env = ProcessInfo.processInfo.environment.merging(["IS_SANDBOX": "1"]) { $1 }.merging(environment) { $1 }
        engine = DispatchEngine(configuration: configuration, store: store, logger: logger, environment: env, k8s: k8s)
    }

    /// A request with a unique id for `tool` and `task`.
    public func request(_ tool: AgentTool, _ task: String, timeout: Double = 60) -> DispatchRequest {
        DispatchRequest(requestId: "t-\(UUID().uuidString.prefix(12))", task: task, tool: tool, timeout: timeout, cwd: dir.path)
    }

    /// Runs `request` in-process to its terminal result.
    public func run(_ request: DispatchRequest) async throws -> DispatchResult {
        try await engine.runOnce(request, token: CancelToken()).result
    }

    /// The inbox document of `requestId`, decoded.
    public func inbox(_ requestId: String) throws -> DispatchResult {
        try JSONDecoder().decode(DispatchResult.self, from: Data(contentsOf: URL(fileURLWithPath: engine.store.inboxPath(requestId))))
    }
}
