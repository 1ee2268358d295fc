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

    /// The service for a runner whose state dir is `stateDir`; `bridgeProgram` is `dispatch-monitor`.
    package init(
        settings: EgressSettings,
        stateDir: String,
        bridgeProgram: String,
        limits: EgressLimits = EgressLimits(),
        onDenied: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        root = "\(stateDir)/egress"
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
        let directory = "\(root)/\(key)"
        var listener: EgressCanaryListener?
        do {
            try Self.makeDirectory(root, mode: 0o700)
            try Self.makeDirectory(directory, mode: 0o711)
            var policy = settings.policy(for: network, repoHost: repoHost)
            policy.runnerPort = servePort.withLock { $0 }
            listener = canary ? try await EgressCanaryListener.open(on: proxy.loop) : nil
            if let listener, let allowance = AddressAllowance("127.0.0.1:\(listener.port)") { policy.allowPrivate.append(allowance) }
            let run = try await proxy.open(
                socketPath: Self.socketPath(root: root, key: key),
                policy: policy,
                requestId: requestId,
                tool: tool,
                carried: Self.takeCarried(directory),
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
            return EgressAttachment(bridge: bridge, run: run, agentEnvironment: environment) { [self, listener] report in
                listener?.channel.close(promise: nil)
                // Handed off: the agent's namespace holds this very directory (a new one would be another inode), and
                // what its agent did so far goes on in the next runner's report.
                if let report { Self.carry(report, in: directory) } else { rmdir(directory) }
                _ = self.open.withLock { $0.removeValue(forKey: key) }
            }
        } catch {
            listener?.channel.close(promise: nil)
            _ = open.withLock { $0.removeValue(forKey: key) }
            throw error
        }
    }

    /// Where a handed-off run's report waits for the runner that adopts it.
    static func carriedPath(_ directory: String) -> String { "\(directory)/report.json" }

    /// Keeps `report` for the next runner (`0600`, written whole and renamed into place).
    static func carry(_ report: NetworkReport, in directory: String) {
        guard let data = try? JSONEncoder().encode(report) else { return }
        let temporary = "\(carriedPath(directory)).tmp"
        let fd = Foundation.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        close(fd)
        if written == data.count { rename(temporary, carriedPath(directory)) } else { unlink(temporary) }
    }

    /// What a previous runner's part of the run recorded, taken (read and removed); `nil` when there is none.
    static func takeCarried(_ directory: String) -> NetworkReport? {
        let path = carriedPath(directory)
        defer { unlink(path) }
        guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20 else { return nil }
        return try? JSONDecoder().decode(NetworkReport.self, from: data)
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

    /// The host of the `origin` remote of the repository at `path` (its `.git` directory, or the directory a `.git`
    /// file names), from its `config`; `nil` when there is none. Read from the operator's checkout a sandbox is made
    /// from — never from a work dir an agent had in its hands.
    package static func originHost(ofRepositoryAt path: String) -> String? {
        var path = path
        var isDirectory: ObjCBool = false
        while !FileManager.default.fileExists(atPath: "\(path)/.git", isDirectory: &isDirectory) {
            guard path != "/", !path.isEmpty else { return nil }
            path = (path as NSString).deletingLastPathComponent
        }
        var gitDirectory = "\(path)/.git"
        if !isDirectory.boolValue {
            guard let text = try? String(contentsOfFile: gitDirectory, encoding: .utf8), text.hasPrefix("gitdir: ") else { return nil }
            let named = text.dropFirst("gitdir: ".count).trimmingCharacters(in: .whitespacesAndNewlines)
            gitDirectory = named.hasPrefix("/") ? named : "\(path)/\(named)"
            if let common = try? String(contentsOfFile: "\(gitDirectory)/commondir", encoding: .utf8) {
                let trimmed = common.trimmingCharacters(in: .whitespacesAndNewlines)
                gitDirectory = trimmed.hasPrefix("/") ? trimmed : "\(gitDirectory)/\(trimmed)"
            }
        }
        guard let config = FileManager.default.contents(atPath: "\(gitDirectory)/config"), config.count < 1 << 20 else { return nil }
        var inOrigin = false
        for raw in String(decoding: config, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") {
                inOrigin = line.replacingOccurrences(of: " ", with: "").lowercased() == "[remote\"origin\"]"
            } else if inOrigin, let equals = line.firstIndex(of: "="), line[..<equals].trimmingCharacters(in: .whitespaces).lowercased() == "url" {
                return repositoryHost(line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces))
            }
        }
        return nil
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
    /// Called once the run's proxy is closed; with the report when the run is handed off (kept for the next runner).
    let released: @Sendable (NetworkReport?) -> Void

    init(
        bridge: NetworkBridge,
        run: EgressRun,
        agentEnvironment: [String: String] = [:],
        released: @escaping @Sendable (NetworkReport?) -> Void
    ) {
        self.bridge = bridge
        self.run = run
        self.agentEnvironment = agentEnvironment
        self.released = released
    }

    /// What the run did on the network so far.
    package var report: NetworkReport { run.report }

    /// Stops the run's proxy (every connection ended) and returns what it did; the run's directory goes with it.
    package func close() async -> NetworkReport {
        let report = await run.close()
        released(nil)
        return report
    }

    /// Stops the run's proxy for a runner that hands the run off: the agent runs on, its directory stays (the next
    /// runner listens there again) with what was recorded so far.
    package func handOff() async {
        released(await run.close())
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
