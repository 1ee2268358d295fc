import AgentProcess
import Crypto
import DispatchCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The runner's egress for isolated runs (CONTRACT §10): the operator's settings, the one proxy, and each run's own
/// directory `<state>/egress/<key>/` holding the socket its bridge connects to. The key is a hash of the request id
/// (a socket's path is short), and no two open runs share one.
package final class EgressService: Sendable {
    package let settings: EgressSettings
    let proxy: EgressProxy
    /// `<state>/egress`, the runner's alone (`0700`, inside the hidden state dir).
    package let root: String
    /// `dispatch-monitor`, the bridge.
    let bridgeProgram: String
    private let open = Mutex<[String: String]>([:])
    /// The port `serve` listens on, once it does: the escape canary checks that its agent cannot reach it.
    private let servePort = Mutex<Int?>(nil)

    /// Tells the service the port `serve` listens on.
    package func serving(on port: Int) { servePort.withLock { $0 = port } }

    /// Longest path of a run's socket (a socket address holds 108 bytes with its final zero).
    static let maxSocketPath = 107

    /// The service for a runner whose state dir is `stateDir`; `bridgeProgram` is `dispatch-monitor`.
    /// Fails, naming the variable, when the state dir's path is too long for the runs' sockets.
    package init(
        settings: EgressSettings,
        stateDir: String,
        bridgeProgram: String,
        limits: EgressLimits = EgressLimits(),
        onDenied: @escaping @Sendable (String) -> Void = { _ in }
    ) throws(EgressConfigurationError) {
        root = "\(stateDir)/egress"
        let longest = Self.socketPath(root: root, key: String(repeating: "0", count: Self.keyLength))
        guard longest.utf8.count <= Self.maxSocketPath else {
            throw EgressConfigurationError(
                "DISPATCH_STATE_DIR \(stateDir) is too long for the egress proxy's sockets (\(longest.utf8.count) bytes of \(Self.maxSocketPath)): "
                    + "use a state dir of at most \(Self.maxSocketPath - (longest.utf8.count - stateDir.utf8.count)) bytes"
            )
        }
        self.settings = settings
        self.bridgeProgram = bridgeProgram
        proxy = EgressProxy(limits: limits, onDenied: onDenied)
    }

    /// Hex digits of a run's key (80 bits of SHA-256 of its request id).
    static let keyLength = 20

    static func socketPath(root: String, key: String) -> String { "\(root)/\(key)/\(NetworkBridge.socketName)" }

    /// The run's directory key.
    static func key(_ requestId: String) -> String {
        SHA256.hash(data: Data(requestId.utf8)).prefix(keyLength / 2).map { String(format: "%02x", $0) }.joined()
    }

    /// Opens a run's way out: its policy (the request's `network` within the operator's list, the repository's host
    /// added), its directory made (`0711`: the bridge, as nobody, enters it from the namespace's root) and the proxy
    /// listening on its socket — replacing one a previous runner left, so an adopted agent's bridge reaches this one.
    package func open(
        requestId: String,
        tool: String,
        network: NetworkRequest?,
        repoHost: String?,
        canary: Bool = false,
        logger: Logger
    ) async throws -> EgressAttachment {
        let key = Self.key(requestId)
        try open.withLock { open in
            if let holder = open[key], holder != requestId {
                throw EgressConfigurationError("the egress directory \(key) is held by request \(holder)")
            }
            open[key] = requestId
        }
        do {
            let directory = "\(root)/\(key)"
            try Self.makeDirectory(root, mode: 0o700)
            try Self.makeDirectory(directory, mode: 0o711)
            var policy = settings.policy(for: network, repoHost: repoHost)
            let listener = canary ? try await EgressCanaryListener.open(on: proxy.loop) : nil
            if let listener, let allowance = AddressAllowance("127.0.0.1:\(listener.port)") { policy.allowPrivate.append(allowance) }
            let run = try await proxy.open(
                socketPath: Self.socketPath(root: root, key: key),
                policy: policy,
                requestId: requestId,
                tool: tool,
                logger: logger
            )
            let bridge = NetworkBridge(program: bridgeProgram, directory: directory)
            var environment: [String: String] = [:]
            if let listener {
                environment = [
                    "DISPATCH_CANARY_PROBE": bridgeProgram, "DISPATCH_CANARY_PROXY_PORT": "\(bridge.port)",
                    "DISPATCH_CANARY_LISTENER": "\(listener.port)",
                ]
                environment["DISPATCH_CANARY_RUNNER_PORT"] = servePort.withLock { $0 }.map { "\($0)" }
            }
            return EgressAttachment(bridge: bridge, run: run, agentEnvironment: environment) { [self] in
                listener?.channel.close(promise: nil)
                rmdir(directory)
                _ = self.open.withLock { $0.removeValue(forKey: key) }
            }
        } catch {
            _ = open.withLock { $0.removeValue(forKey: key) }
            throw error
        }
    }

    /// Makes `path` a directory of the runner's with `mode`, or checks the one there is (never a link, never someone
    /// else's) and sets its mode.
    static func makeDirectory(_ path: String, mode: mode_t) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw EgressConfigurationError("cannot make the egress directory \(path): \(String(cString: strerror(errno)))")
        }
        let fd = Foundation.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw EgressConfigurationError("the egress directory \(path) is not a directory of the runner's: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == geteuid() else {
            throw EgressConfigurationError("the egress directory \(path) belongs to another user")
        }
        fchmod(fd, mode)
    }

    /// The host of a repository URL (`https://host/…`, `ssh://user@host:port/…`, `user@host:path`), for the run's
    /// policy; `nil` for a local path.
    package static func repositoryHost(_ url: String?) -> String? {
        guard let url, !url.hasPrefix("/"), !url.hasPrefix("file:") else { return nil }
        if let components = URLComponents(string: url), let host = components.host, !host.isEmpty, components.scheme != nil {
            return host.lowercased()
        }
        // scp-like: user@host:path
        guard let colon = url.firstIndex(of: ":"), !url[..<colon].contains("/") else { return nil }
        let authority = url[..<colon]
        let host = authority.split(separator: "@").last.map(String.init) ?? ""
        return host.isEmpty ? nil : host.lowercased()
    }
}

/// One run's open way out: the bridge its isolated processes get, and the proxy's run behind it.
package final class EgressAttachment: Sendable {
    package let bridge: NetworkBridge
    /// What the run's agent is told besides the proxy: the escape canary's probe, its listener and serve's port.
    package let agentEnvironment: [String: String]
    let run: EgressRun
    let released: @Sendable () -> Void

    init(bridge: NetworkBridge, run: EgressRun, agentEnvironment: [String: String] = [:], released: @escaping @Sendable () -> Void) {
        self.bridge = bridge
        self.run = run
        self.agentEnvironment = agentEnvironment
        self.released = released
    }

    /// What the run did on the network so far.
    package var report: NetworkReport { run.report }

    /// Stops the run's proxy (every connection ended) and returns what it did.
    package func close() async -> NetworkReport {
        let report = await run.close()
        released()
        return report
    }
}

/// A listener of the escape canary's own on the runner's loopback, allowed for that run alone: it greets and closes.
/// The canary reaches it through the proxy (an allowed destination works) and fails to reach it directly (the
/// agent's loopback is its own).
struct EgressCanaryListener {
    let channel: any Channel
    let port: Int

    /// The greeting the canary's probe looks for.
    static let greeting = "dispatch egress canary\n"

    static func open(on loop: any EventLoop) async throws -> EgressCanaryListener {
        let channel = try await ServerBootstrap(group: loop)
            .childChannelInitializer { channel in
                channel.writeAndFlush(channel.allocator.buffer(string: greeting)).whenComplete { _ in channel.close(promise: nil) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return EgressCanaryListener(channel: channel, port: channel.localAddress?.port ?? 0)
    }
}
