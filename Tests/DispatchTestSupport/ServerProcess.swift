import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A real `dispatch serve` process on 127.0.0.1 with a random port, for tests.
package final class ServerProcess: @unchecked Sendable {
    // Mutable only from the test that owns it.
    package let stateDir: String
    package let token: String?
    package private(set) var port = 0
    package private(set) var command: RunningCommand?
    let environment: [String: String]
    let arguments: [String]
    /// A command the server is started through (e.g. `unshare --uts` with another hostname); it must exec it.
    let launcher: [String]

    package init(
        stateDir: String,
        token: String? = "test-token-0123456789abcdef0123456789abcdef",
        maxConcurrent: Int = 2,
        drainSeconds: Double = 10,
        environment: [String: String] = [:],
        extraArguments: [String] = [],
        port: Int = 0,
        launcher: [String] = []
    ) {
        self.launcher = launcher
        self.stateDir = stateDir
        self.token = token
        var env = environment
        env["DISPATCH_TOKEN"] = token ?? ""
        env["DISPATCH_CODEX_BIN"] = env["DISPATCH_CODEX_BIN"] ?? TestPaths.fake("codex")
        env["DISPATCH_CLAUDE_BIN"] = env["DISPATCH_CLAUDE_BIN"] ?? TestPaths.fake("claude")
        env["DISPATCH_PI_BIN"] = env["DISPATCH_PI_BIN"] ?? TestPaths.fake("pi")
        env["DISPATCH_KILL_GRACE_MS"] = env["DISPATCH_KILL_GRACE_MS"] ?? "1000"
        // Claude Code as root needs IS_SANDBOX=1 passed through, as an operator would.
        env["DISPATCH_AGENT_ENV"] = env["DISPATCH_AGENT_ENV"] ?? "IS_SANDBOX"
        env["IS_SANDBOX"] = env["IS_SANDBOX"] ?? "1"
        // As an operator gets it (`auto`: bubblewrap when it works here) unless the test or the test run says otherwise.
        env["DISPATCH_ISOLATION"] = env["DISPATCH_ISOLATION"] ?? ProcessInfo.processInfo.environment["DISPATCH_ISOLATION"] ?? "auto"
        env["DISPATCH_AGENT_USER"] = env["DISPATCH_AGENT_USER"] ?? TestPaths.hostAgentUser
        self.environment = env
        self.arguments =
            [
                "serve", "--host", "127.0.0.1", "--port", "\(port)", "--state-dir", stateDir, "--max-concurrent", "\(maxConcurrent)",
                "--drain-seconds", "\(drainSeconds)", "--log-level", "warning",
            ] + extraArguments
    }

    /// A launcher that runs the server in its own UTS namespace under `hostname` (root only).
    package static func onHost(_ hostname: String) -> [String] {
        ["/usr/bin/unshare", "--uts", "/bin/sh", "-c", "hostname \(hostname) && exec \"$0\" \"$@\""]
    }

    /// A launcher that runs the server as if on another machine (root only): its own hostname, and its state dir
    /// on a tmpfs in a mount namespace of its own, so that no other process here sees its files.
    package static func onAnotherMachine(_ hostname: String, stateDir: String) -> [String] {
        try? FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        return [
            "/usr/bin/unshare", "--uts", "--mount", "--propagation", "private", "/bin/sh", "-c",
            "hostname \(hostname) && mount -t tmpfs -o mode=0700 tmpfs '\(stateDir)' && exec \"$0\" \"$@\"",
        ]
    }

    /// Starts the server and waits until it listens.
    package func start() async throws {
        let portFile = "\(stateDir).port-\(UUID().uuidString.prefix(6))"
        try? FileManager.default.removeItem(atPath: portFile)
        let argv = launcher + [TestPaths.dispatchBinary] + arguments + ["--port-file", portFile]
        command = try CommandRunner.start(argv[0], Array(argv.dropFirst()), environment: environment)
        let ready = await eventually(timeout: .seconds(30)) { FileManager.default.fileExists(atPath: portFile) }
        guard ready, let text = try? String(contentsOfFile: portFile, encoding: .utf8),
            let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            let output =
                command.map { process -> String in
                    process.terminate()
                    let result = process.wait()
                    return result.stderr
                } ?? ""
            throw GitFixtureError(message: "dispatch serve did not start: \(output)")
        }
        self.port = port
    }

    /// Sends `signal` and waits for the exit; returns the exit status and output.
    @discardableResult
    package func stop(_ signal: Int32 = SIGTERM) -> CommandResult? {
        guard let command else { return nil }
        kill(command.pid, signal)
        let result = command.wait()
        self.command = nil
        return result
    }

    package var pid: Int32? { command?.pid }

    /// A response: status and parsed JSON body (or raw text).
    package struct Reply: Sendable {
        package var status: Int
        package var text: String
        package var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] }
    }

    /// Sends a request; `token: nil` uses the server's token, `.some(nil)` none at all.
    package func send(
        _ method: HTTPMethod,
        _ path: String,
        body: Data? = nil,
        token: String?? = nil,
        headers: [(String, String)] = [],
        timeout: TimeAmount = .seconds(60)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        let presented = token ?? self.token
        if let presented { request.headers.add(name: "Authorization", value: "Bearer \(presented)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let buffer = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), text: String(buffer: buffer))
    }

    /// POSTs a dispatch request document.
    package func dispatch(_ body: [String: Any]) async throws -> Reply {
        try await send(.POST, "/internal/agent-dispatch", body: JSONSerialization.data(withJSONObject: body))
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a server whose URL must be known before it starts).
package func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
