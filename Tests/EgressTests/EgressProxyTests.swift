import DispatchCore
import DispatchTestSupport
import Egress
import Foundation
import Logging
import Testing

/// The proxy through real sockets: an agent's side is a unix-socket client speaking HTTP proxy requests, the
/// "internet" is listeners of the test's own on loopback (allowed through `DISPATCH_EGRESS_ALLOW_PRIVATE`, or not).
@Suite(.serialized) struct EgressProxyTests {
    let temp = TempDir()

    func open(_ proxy: EgressProxy, allow: String, allowPrivate: String, network: NetworkRequest? = nil) async throws -> EgressRun {
        let settings = try EgressSettings(environment: ["DISPATCH_EGRESS_ALLOW": allow, "DISPATCH_EGRESS_ALLOW_PRIVATE": allowPrivate])
        return try await proxy.open(
            socketPath: temp.child("egress.sock"),
            policy: settings.policy(for: network, repoHost: nil),
            requestId: "egress-test",
            tool: "canary",
            logger: Logger(label: "t")
        )
    }

    @Test func aTunnelToAnAllowedAddressCarriesBytesBothWaysAndIsCounted() async throws {
        let echo = try LoopbackServer.echo()
        let proxy = EgressProxy()
        let run = try await open(proxy, allow: "none.test", allowPrivate: "127.0.0.1:\(echo.port)")
        let client = try UnixClient(run.socketPath)
        try client.send("CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\nHost: 127.0.0.1:\(echo.port)\r\n\r\n")
        let head = try client.readHead()
        #expect(head.hasPrefix("HTTP/1.1 200"))
        let payload = String(repeating: "x", count: 300_000)
        try client.send(payload)
        let echoed = try client.read(count: payload.utf8.count)
        #expect(echoed == payload.utf8.count)
        client.close()
        try await waitUntil { run.report.allowed.first?.connections == 1 }
        let allowed = try #require(run.report.allowed.first)
        #expect(allowed.host == "127.0.0.1" && allowed.port == echo.port)
        #expect(allowed.bytesOut == Int64(payload.utf8.count) && allowed.bytesIn == Int64(payload.utf8.count))
        #expect(run.report.denied.isEmpty)
        _ = await run.close()
    }

    @Test func aDestinationOutsideThePolicyIsRefusedWithItsReason() async throws {
        let echo = try LoopbackServer.echo()
        let proxy = EgressProxy()
        let run = try await open(proxy, allow: "localhost", allowPrivate: "127.0.0.1:1")
        for (target, reason) in [
            ("127.0.0.1:\(echo.port)", "not in DISPATCH_EGRESS_ALLOW"),
            ("localhost:\(echo.port)", "resolves to 127.0.0.1 (loopback)"),
            ("169.254.169.254:80", "not in DISPATCH_EGRESS_ALLOW"),
        ] {
            let client = try UnixClient(run.socketPath)
            try client.send("CONNECT \(target) HTTP/1.1\r\n\r\n")
            let head = try client.readHead()
            #expect(head.hasPrefix("HTTP/1.1 403"), "\(target): \(head)")
            #expect(head.contains(reason), "\(target): \(head)")
            client.close()
        }
        // What is no host name or address is no request at all, and is not recorded.
        let odd = try UnixClient(run.socketPath)
        try odd.send("CONNECT ex!ample.com:443 HTTP/1.1\r\n\r\n")
        #expect(try odd.readHead().hasPrefix("HTTP/1.1 400"))
        #expect(run.report.denied.count == 3)
        let report = await run.close()
        #expect(report.denied.map(\.reason) == ["not in DISPATCH_EGRESS_ALLOW", "resolves to 127.0.0.1 (loopback)", "not in DISPATCH_EGRESS_ALLOW"])
        #expect(report.denied.map(\.host) == ["127.0.0.1", "localhost", "169.254.169.254"])
        #expect(echo.accepted == 0)
    }

    @Test func aPlainHTTPRequestIsSentOnInOriginFormAndItsAnswerRelayed() async throws {
        let web = try LoopbackServer.http(answer: "hello from upstream")
        let proxy = EgressProxy()
        let run = try await open(proxy, allow: "none.test", allowPrivate: "127.0.0.1:\(web.port)")
        let client = try UnixClient(run.socketPath)
        try client.send(
            "GET http://127.0.0.1:\(web.port)/path?q=1 HTTP/1.1\r\nHost: attacker.example\r\nProxy-Authorization: secret\r\n"
                + "Proxy-Connection: keep-alive\r\n\r\n"
        )
        let answer = try client.readAll()
        #expect(answer.hasPrefix("HTTP/1.1 200"))
        #expect(answer.hasSuffix("hello from upstream"))
        let seen = try #require(web.requests.first)
        #expect(seen.hasPrefix("GET /path?q=1 HTTP/1.1\r\n"))
        #expect(!seen.lowercased().contains("proxy-"))
        // The destination's own name, not the one the agent wrote (a CDN routes by it).
        #expect(seen.contains("Host: 127.0.0.1:\(web.port)\r\n") && !seen.contains("attacker"))
        #expect(seen.lowercased().contains("connection: close"))
        try await waitUntil { run.report.allowed.first?.connections == 1 }
        _ = await run.close()
    }

    @Test func networkNoneRefusesEverythingAndALimitBoundsConnections() async throws {
        let echo = try LoopbackServer.echo()
        let proxy = EgressProxy(limits: EgressLimits(connectionsPerRun: 2))
        let none = try await open(proxy, allow: "*", allowPrivate: "127.0.0.1", network: NetworkRequest.none)
        let refused = try UnixClient(none.socketPath)
        try refused.send("CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\n\r\n")
        #expect(try refused.readHead().contains("the request allows no network"))
        _ = await none.close()

        let run = try await open(proxy, allow: "*", allowPrivate: "127.0.0.1")
        let held = try (0..<2).map { _ in try UnixClient(run.socketPath) }
        for client in held { try client.send("CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\n\r\n") }
        for client in held { #expect(try client.readHead().hasPrefix("HTTP/1.1 200")) }
        let third = try UnixClient(run.socketPath)
        #expect(try third.readAll().isEmpty)
        #expect(run.report.denied.first?.reason == "connection limit (2 open)")
        let report = await run.close()
        #expect(report.deniedConnections == 1)
        for client in held { #expect(try client.readAll().isEmpty) }
    }

    /// A body sent with its head (in one write, before the destination is even judged) goes on after the head; an
    /// agent that leaves in the middle of an answer ends both connections (the proxy once died of it: it wrote a raw
    /// buffer into the destination's HTTP encoder).
    @Test func aBodySentWithItsHeadGoesOnAndAnAgentLeavingMidAnswerEndsBothSides() async throws {
        let web = try LoopbackServer.http(answer: "stored")
        let holding = try LoopbackServer.holding()
        let proxy = EgressProxy()
        let run = try await open(proxy, allow: "none.test", allowPrivate: "127.0.0.0/8")
        let post = try UnixClient(run.socketPath)
        try post.send("POST http://127.0.0.1:\(web.port)/upload HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world")
        #expect(try post.readAll().hasSuffix("stored"))
        #expect(web.requests.first?.hasSuffix("\r\n\r\nhello world") == true, "\(web.requests)")
        for _ in 0..<3 {
            let client = try UnixClient(run.socketPath)
            try client.send("GET http://127.0.0.1:\(holding.port)/big HTTP/1.1\r\n\r\n")
            #expect(try client.readHead().hasPrefix("HTTP/1.1 200"))
            client.close()
        }
        try await waitUntil { run.openConnections == 0 && run.report.allowed.first { $0.port == holding.port }?.connections == 3 }
        let report = await run.close()
        let web1 = try #require(report.allowed.first { $0.port == web.port })
        #expect(web1.bytesOut > 11 && web1.bytesIn > 6, "\(web1)")
    }

    /// A run's socket deeper than a socket address holds (a long state dir) is bound through its directory's
    /// descriptor, and reached the same way (as the bridge does, from inside the directory).
    @Test func aSocketPathLongerThanAnAddressHoldsStillListens() async throws {
        let echo = try LoopbackServer.echo()
        let deep = temp.child(String(repeating: "d", count: 60) + "/" + String(repeating: "e", count: 60))
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        let settings = try EgressSettings(environment: ["DISPATCH_EGRESS_ALLOW": "none.test", "DISPATCH_EGRESS_ALLOW_PRIVATE": "127.0.0.1"])
        let run = try await EgressProxy().open(
            socketPath: "\(deep)/proxy.sock",
            policy: settings.policy(for: nil, repoHost: nil),
            requestId: "long",
            tool: "canary",
            logger: Logger(label: "t")
        )
        #expect(run.socketPath.utf8.count > 107)
        let directory = Foundation.open(deep, O_RDONLY | O_DIRECTORY)
        defer { Foundation.close(directory) }
        let client = try UnixClient("/proc/self/fd/\(directory)/proxy.sock")
        try client.send("CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\n\r\n")
        #expect(try client.readHead().hasPrefix("HTTP/1.1 200"))
        client.close()
        _ = await run.close()
        #expect(!FileManager.default.fileExists(atPath: "\(deep)/proxy.sock"))
    }

    /// A client that stops sending (a half-close) still gets what the destination answers, through a tunnel: the
    /// stop is passed on once what came before it is written, and the answer comes back before the end.
    @Test func aHalfCloseIsPassedOnAndTheAnswerStillComes() async throws {
        let echo = try LoopbackServer.echo()
        let run = try await open(EgressProxy(), allow: "none.test", allowPrivate: "127.0.0.1")
        let client = try UnixClient(run.socketPath)
        try client.send("CONNECT 127.0.0.1:\(echo.port) HTTP/1.1\r\n\r\n")
        #expect(try client.readHead().hasPrefix("HTTP/1.1 200"))
        let payload = String(repeating: "y", count: 200_000)
        try client.send(payload)
        client.shutdownWrite()
        let answer = try client.readAll()
        #expect(answer.utf8.count == payload.utf8.count, "\(answer.utf8.count) of \(payload.utf8.count) bytes came back")
        client.close()
        try await waitUntil { run.openConnections == 0 }
        _ = await run.close()
    }

    func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        #expect(condition())
    }
}

/// A blocking unix-socket client (the agent's bridge, as the proxy sees it).
final class UnixClient {
    let fd: Int32

    init(_ path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        var time = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw SocketError("connect \(path): \(errno)") }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBufferPointer { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError("send: \(errno)") }
            sent += n
        }
    }

    /// Reads up to the end of a response head.
    func readHead() throws -> String {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while !bytes.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
            guard recv(fd, &byte, 1, 0) == 1 else { break }
            bytes.append(byte)
        }
        let head = String(decoding: bytes, as: UTF8.self)
        if head.hasPrefix("HTTP/1.1 4") || head.hasPrefix("HTTP/1.1 5") { return head + (try readAll()) }
        return head
    }

    /// Reads `count` bytes (or to the end); returns how many came.
    func read(count: Int) throws -> Int {
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while total < count {
            let n = recv(fd, &buffer, min(buffer.count, count - total), 0)
            if n <= 0 { break }
            total += n
        }
        return total
    }

    /// Reads to the end of the stream.
    func readAll() throws -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    func close() { Foundation.close(fd) }

    /// Sends no more (a half-close), still reading.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    deinit { Foundation.close(fd) }
}

/// A listener on 127.0.0.1 served by a thread: an echo server, or an HTTP server that answers every request with a
/// fixed text and remembers the request heads.
final class LoopbackServer: @unchecked Sendable {
    let fd: Int32
    let port: Int
    private let lock = NSLock()
    private var _accepted = 0
    private var _requests: [String] = []
    var accepted: Int { lock.withLock { _accepted } }
    var requests: [String] { lock.withLock { _requests } }

    private init(serve: @escaping @Sendable (Int32, LoopbackServer) -> Void) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw SocketError("listen: \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.serve = serve
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    private let serve: @Sendable (Int32, LoopbackServer) -> Void

    private func start() -> LoopbackServer {
        let listener = fd
        let serve = self.serve
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { return }
                lock.withLock { _accepted += 1 }
                Thread.detachNewThread { serve(client, self) }
            }
        }
        return self
    }

    static func echo() throws -> LoopbackServer {
        try LoopbackServer { client, _ in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(client, &buffer, buffer.count, 0)
                if n <= 0 { break }
                var sent = 0
                while sent < n {
                    let m = buffer[sent..<n].withUnsafeBufferPointer { Foundation.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if m <= 0 { break }
                    sent += m
                }
            }
            Foundation.close(client)
        }
        .start()
    }

    static func http(answer: String) throws -> LoopbackServer {
        try LoopbackServer { client, server in
            var bytes: [UInt8] = []
            var byte: UInt8 = 0
            while !bytes.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)), recv(client, &byte, 1, 0) == 1 { bytes.append(byte) }
            // A body (Content-Length) is part of what was sent.
            let head = String(decoding: bytes, as: UTF8.self).lowercased()
            let length = head.range(of: "content-length: ").flatMap { Int(head[$0.upperBound...].prefix { $0.isNumber }) } ?? 0
            for _ in 0..<length where recv(client, &byte, 1, 0) == 1 { bytes.append(byte) }
            server.lock.withLock { server._requests.append(String(decoding: bytes, as: UTF8.self)) }
            let response = "HTTP/1.1 200 OK\r\nContent-Length: \(answer.utf8.count)\r\nConnection: close\r\n\r\n\(answer)"
            _ = Array(response.utf8).withUnsafeBufferPointer { Foundation.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Foundation.close(client)
        }
        .start()
    }

    /// An HTTP server that starts a long answer and holds it until the client leaves.
    static func holding() throws -> LoopbackServer {
        try LoopbackServer { client, _ in
            var byte: UInt8 = 0
            var bytes: [UInt8] = []
            while !bytes.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)), recv(client, &byte, 1, 0) == 1 { bytes.append(byte) }
            let start = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\npartial"
            _ = Array(start.utf8).withUnsafeBufferPointer { Foundation.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            while recv(client, &byte, 1, 0) == 1 {}
            Foundation.close(client)
        }
        .start()
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        Foundation.close(fd)
    }
}

struct SocketError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
