import AgentProcess
import ArgumentParser
import DispatchCore
import DispatchServer
import DispatchStore
import Dispatcher
import Egress
import Foundation
import Kube
import Logging

/// `dispatch serve`: the HTTP service.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the HTTP service (CONTRACT §3) until SIGTERM/SIGINT, then drain."
    )

    @Option(help: "Address to listen on (default: $DISPATCH_HOST or 127.0.0.1).") var host: String?
    @Option(help: "Port (default: $DISPATCH_PORT or 3111; 0 picks a free port).") var port: Int?
    @OptionGroup var state: StateOptions
    @Option(
        name: .customLong("token-file"),
        help: "File holding the bearer token (default: $DISPATCH_TOKEN_FILE, else $DISPATCH_TOKEN, else <state>/token, created when missing)."
    )
    var tokenFile: String?
    @Option(
        name: .customLong("allowed-host"),
        help: "A Host name a loopback listener accepts besides this machine's (repeatable; also $DISPATCH_ALLOWED_HOSTS, comma-separated)."
    )
    var allowedHosts: [String] = []
    @Option(name: .customLong("max-concurrent"), help: "Executions at once (default: $DISPATCH_MAX_CONCURRENT or the core count).")
    var maxConcurrent: Int?
    @Option(name: .customLong("drain-seconds"), help: "On SIGTERM, how long running dispatches may finish before they are cancelled.")
    var drainSeconds: Double = 10
    @Option(
        name: .customLong("on-shutdown"),
        help:
            "On SIGTERM: cancel (drain, then cancel) or handoff (leave running local runs to the next serve; exit at once). Default: $DISPATCH_ON_SHUTDOWN or cancel."
    )
    var onShutdownOption: String?

    /// `--on-shutdown`, else `DISPATCH_ON_SHUTDOWN` (CONTRACT §6), else `cancel`.
    var onShutdown: String {
        onShutdownOption ?? ProcessInfo.processInfo.environment["DISPATCH_ON_SHUTDOWN"].flatMap { $0.isEmpty ? nil : $0 } ?? "cancel"
    }

    /// Where the shutdown mode came from, for the error that refuses it.
    var onShutdownSource: String { onShutdownOption == nil ? "DISPATCH_ON_SHUTDOWN" : "--on-shutdown" }
    @Option(name: .customLong("port-file"), help: "Write the bound port to this file once listening.") var portFile: String?
    @Option(name: .customLong("log-format"), help: "text or json.") var logFormat = "text"
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func validate() throws {
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("invalid --log-format \(logFormat): must be text or json") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("invalid --log-level \(logLevel)") }
        if let maxConcurrent, maxConcurrent < 1 { throw ValidationError("invalid --max-concurrent: must be at least 1") }
        if let port, !(0...65535).contains(port) { throw ValidationError("invalid --port \(port)") }
        guard DispatchService.ShutdownMode(rawValue: onShutdown) != nil else {
            throw ValidationError("invalid \(onShutdownSource) \(onShutdown): must be cancel or handoff")
        }
    }

    func run() async throws {
        var configuration = state.configuration()
        if let host { configuration.host = host }
        if let port { configuration.port = port }
        if let maxConcurrent { configuration.maxConcurrent = maxConcurrent }
        let lock: StateDirLock
        do {
            lock = try StateDirLock(stateDir: configuration.stateDir)
        } catch let held as StateDirLock.Held {
            throw ValidationError(held.description)
        }
        defer { withExtendedLifetime(lock) {} }
        PrivateState.tighten(configuration)
        let token = try serviceToken(configuration)
        // A token file given as a flag is hidden from agents like one named by DISPATCH_TOKEN_FILE.
        if let tokenFile { configuration.tokenFile = absolute(tokenFile) }
        let isolation = try resolveIsolation(configuration)
        let egress = try resolveEgress(configuration, isolation: isolation)
        var server = ServerConfiguration(
            host: configuration.host,
            port: configuration.port,
            token: token.value,
            allowedHosts: allowedHosts + configuration.allowedHosts,
            drainSeconds: drainSeconds
        )
        server.isolation = isolation.mode.rawValue
        server.egress = egress == nil ? "none" : "proxy"
        let openFiles = ConnectionLimits.raiseOpenFilesLimit()
        do {
            server.connections = try ConnectionLimits.resolve(
                environment: ProcessInfo.processInfo.environment["DISPATCH_MAX_CONNECTIONS"],
                openFilesLimit: openFiles
            )
        } catch {
            throw ValidationError("\(error)")
        }
        let logger = bootstrapLogging()
        logger.notice(
            token.created ? "created the service token" : "using the service token",
            metadata: ["source": "\(token.source)", "hint": "send it as Authorization: Bearer <token>"]
        )
        logger.info("agents are contained", metadata: ["isolation": "\(isolation.mode.rawValue)"])
        logger.info("connections", metadata: ["openFiles": "\(openFiles)", "maxConnections": "\(server.connections.maxConnections)"])
        try await TraceExport.around(logger: logger) {
            try await serve(configuration, server: server, isolation: isolation, egress: egress, logger: logger)
        }
    }

    /// The service token, refused when it is missing or too weak.
    func serviceToken(_ configuration: DispatchConfiguration) throws -> ServiceToken {
        // Replicas on one PostgreSQL share one token (callback tokens verify on any of them): it must be configured,
        // never made up in one replica's state dir.
        let shared = configuration.databaseURL != nil
        let resolved = try ServiceToken.resolve(
            tokenFile: tokenFile.map(absolute),
            configuration: configuration,
            createInState: !shared,
            useState: !shared
        )
        guard let token = resolved else {
            throw ValidationError(
                shared
                    ? "DISPATCH_DATABASE_URL is set: the admin token must be configured, the same on every replica (--token-file, DISPATCH_TOKEN_FILE or DISPATCH_TOKEN)"
                    : "no token: set --token-file, DISPATCH_TOKEN_FILE or DISPATCH_TOKEN"
            )
        }
        // Callback tokens are HMACs under a key derived from this token: a guessable one could be found offline.
        guard token.value.count >= ServiceToken.minimumLength, !token.value.hasPrefix("REPLACE_ME") else {
            throw ValidationError(
                "the token from \(token.source) is too weak: use at least \(ServiceToken.minimumLength) random characters (e.g. openssl rand -hex 32)"
            )
        }
        return token
    }

    /// Process-wide logging in the chosen format and level.
    func bootstrapLogging() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "agent-dispatch")
        logger.logLevel = level
        return logger
    }

    /// Opens the store, wires the backends, recovers what a previous process left and runs until shutdown.
    func serve(
        _ configuration: DispatchConfiguration,
        server: ServerConfiguration,
        isolation: (mode: IsolationMode, bwrap: String?),
        egress: EgressService?,
        logger: Logger
    ) async throws {
        let store = try await openStore(configuration, logger: logger)
        logger.info("store opened", metadata: ["store": "\(store.kind)"])
        let k8s: KubeBackend?
        do {
            k8s = try K8sSettings.backend(configuration, adminToken: server.token)
        } catch {
            throw ValidationError("cannot use the k8s backend: \(error)")
        }
        var configuration = configuration
        if let k8s {
            configuration.secretFiles += k8s.client.connection.secretFiles + [k8s.client.connection.tokenFile].compactMap { $0 }
            logger.info("k8s backend enabled", metadata: ["server": "\(k8s.client.connection.server)", "namespace": "\(k8s.settings.namespace)"])
        }
        let engine = DispatchEngine.standard(
            configuration: configuration,
            store: store,
            logger: logger,
            isolation: isolation,
            k8s: k8s,
            warmPool: warmPool(configuration, store: store, logger: logger),
            egress: egress
        )
        let service = DispatchService(
            engine: engine,
            maxConcurrent: configuration.maxConcurrent,
            logger: logger,
            drainOnShutdown: .milliseconds(Int(server.drainSeconds * 1000)),
            onShutdown: DispatchService.ShutdownMode(rawValue: onShutdown) ?? .cancel
        )
        if onShutdown == "handoff", !engine.runsOutliveRunner {
            logger.warning("--on-shutdown handoff without isolation: running local agents are not held by monitors, the next serve ends them")
        }
        try await service.recover()
        let portFile = self.portFile.map(absolute)
        do {
            let configuredURL = configuration.replicaURL
            try await DispatchApplication.run(service: service, configuration: server, logger: logger) { port in
                await service.advertise(url: configuredURL ?? Self.replicaURL(host: server.host, port: port))
                egress?.serving(on: port)
                if let portFile { try? AtomicFile.write(Data("\(port)\n".utf8), to: portFile) }
            }
        } catch {
            await k8s?.client.shutdown()
            throw error
        }
        // AsyncHTTPClient must be shut down before it is released.
        await k8s?.client.shutdown()
    }

    /// How peers reach this listener when `DISPATCH_REPLICA_URL` does not say: its address, or the hostname when it
    /// listens on every address. None for a loopback listener: no peer elsewhere reaches it, and a peer's own
    /// loopback port of that number could be anyone's (an agent's) — with the admin token in the request.
    static func replicaURL(host: String, port: Int) -> String? {
        guard !LoopbackAddress.isLoopback(host), host != "localhost" else { return nil }
        let name = ["0.0.0.0", "::", ""].contains(host) ? ProcessInfo.processInfo.hostName : host
        return "http://\(name.contains(":") ? "[\(name)]" : name):\(port)"
    }
}
