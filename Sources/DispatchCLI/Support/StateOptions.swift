import AgentProcess
import ArgumentParser
import DispatchCore
import DispatchStore
import Dispatcher
import Foundation
import Kube
import Logging

/// Options that locate the local state (flags win over environment, environment over defaults).
struct StateOptions: ParsableArguments {
    @Option(help: "State directory (default: $DISPATCH_STATE_DIR or ~/.local/state/agent-dispatch).")
    var stateDir: String?

    @Option(help: "Inbox directory for result files (default: $DISPATCH_INBOX_DIR or <state>/inbox).")
    var inboxDir: String?

    /// The configuration with these flags applied.
    func configuration() -> DispatchConfiguration {
        var configuration = DispatchConfiguration()
        if let stateDir { configuration.stateDir = absolute(stateDir) }
        if let inboxDir { configuration.inboxDirOverride = absolute(inboxDir) }
        return configuration
    }

    /// Opens the store and an engine over it.
    /// `createToken`: `dispatch run` may create `<state>/token` (its k8s Jobs' callback tokens derive from it);
    /// read-only commands never do.
    /// `runsAgents`: the command starts agents, so isolation is resolved (and a requested but unusable one refused).
    func engine(
        logLevel: Logger.Level = .warning,
        createToken: Bool = false,
        agentsDieWithRunner: Bool = false,
        runsAgents: Bool = false
    ) async throws -> DispatchEngine {
        var configuration = configuration()
        configuration.agentsDieWithRunner = agentsDieWithRunner
        let isolation = runsAgents ? try resolveIsolation(configuration) : (mode: IsolationMode.none, bwrap: String?.none)
        let egress = try resolveEgress(configuration, isolation: isolation)
        let token = try ServiceToken.resolve(tokenFile: nil, configuration: configuration, createInState: createToken)
        let store = try await openStore(configuration, logger: CLILogging.logger(level: logLevel))
        let k8s = K8sSettings.backendOrReason(configuration, adminToken: token?.value)
        if let kube = k8s as? KubeBackend {
            configuration.secretFiles += kube.client.connection.secretFiles + [kube.client.connection.tokenFile].compactMap { $0 }
        }
        return DispatchEngine.standard(
            configuration: configuration,
            store: store,
            logger: CLILogging.logger(level: logLevel),
            isolation: isolation,
            k8s: k8s,
            egress: egress
        )
    }
}

/// Makes `path` absolute against the current directory.
func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

/// Process-wide logging set-up for CLI commands: stderr, plain text.
enum CLILogging {
    static func logger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "agent-dispatch") { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = ProcessInfo.processInfo.environment["DISPATCH_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
        return logger
    }
}

/// Output helpers.
enum Output {
    /// The result document as JSON (stable key order).
    static func json<T: Encodable>(_ value: T, pretty: Bool = false) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }

    /// One clear line on stderr.
    static func error(_ message: String) {
        FileHandle.standardError.write(Data("dispatch: \(message)\n".utf8))
    }

    /// The exit code for a result status.
    static func exitCode(for status: DispatchStatus) -> ExitCode {
        switch status {
        case .completed: .success
        case .cancelled: DispatchExit.cancelled
        case .failed, .queued, .running: DispatchExit.failed
        }
    }

    /// A short human summary of a result.
    static func summary(_ result: DispatchResult) -> String {
        var lines = ["\(result.requestId): \(result.status.rawValue)" + (result.durationMs.map { " in \($0)ms" } ?? "")]
        if let error = result.error { lines.append("error: \(error)") }
        if let text = result.result, !text.isEmpty { lines.append("result:\n\(text)") }
        if let logs = result.logs { lines.append("logs: \(logs.stdoutPath) \(logs.stderrPath)") }
        if let patchPath = result.artifacts?.patchPath { lines.append("patch: \(patchPath)") }
        return lines.joined(separator: "\n")
    }
}
