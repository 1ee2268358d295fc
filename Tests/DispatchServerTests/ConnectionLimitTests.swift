import DispatchTestSupport
import Foundation
import Testing

/// Idle connections as an attacking agent opens them: `serve` keeps its descriptors (a cap, raised limits) and
/// closes connections that send nothing, so it neither crashes nor takes its own live runs for dead.
@Suite(.serialized) struct ConnectionLimitTests {
    let dir = TempDir("connections")

    /// serve at a 1,024 open-files limit (soft and hard, where the attack crashed it) and 2,000 connections that
    /// never send a byte: `/healthz` answers, the idle ones are closed, and a run live throughout ends `completed`.
    @Test func idleConnectionsNeitherCrashServeNorEndItsRuns() async throws {
        let server = ServerProcess(stateDir: dir.child("flood"), launcher: ["/usr/bin/prlimit", "--nofile=1024:1024", "--"])
        try await server.start()
        defer { server.stop() }
        let accepted = try await server.dispatch(["requestId": "live-1", "task": "fake:sleep=15 fake:answer=alive", "tool": "codex"])
        #expect(accepted.status == 202, "\(accepted.text)")
        let flood = try CommandRunner.start(
            "/usr/bin/python3",
            ["\(TestPaths.packageRoot)/canaries/idle_connections.py", "--port", "\(server.port)", "--count", "2000", "--seconds", "25"]
        )
        try await Task.sleep(for: .seconds(2))
        let health = try await server.send(.GET, "/healthz", timeout: .seconds(30))
        #expect(health.status == 200, "\(health.text)")
        let done = try await server.send(.GET, "/internal/agent-await/live-1?timeoutMs=60000", timeout: .seconds(70))
        let result = done.json?["result"] as? [String: Any]
        #expect(result?["status"] as? String == "completed", "\(done.text)")
        #expect(result?["result"] as? String == "alive")
        let report = flood.wait().stdout.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let closed = report?["closedByServer"] as? Int ?? 0
        #expect(report?["opened"] as? Int == 2000, "\(String(describing: report))")
        #expect(closed >= 700, "serve closed only \(closed) connections that never sent a request head")
        #expect(server.pid.map { kill($0, 0) == 0 } == true, "serve is alive")
    }

    /// A request whose body trickles in a byte at a time counts as active to the idle timeout: without a deadline for
    /// the body, a few hundred such connections (401 or not: the body is read first) would hold every slot for ever.
    @Test func aBodyTrickledAByteAtATimeIsCutOff() async throws {
        let server = ServerProcess(stateDir: dir.child("trickle"))
        try await server.start()
        defer { server.stop() }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(server.port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        let head = "POST /internal/agent-dispatch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        _ = head.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        let clock = ContinuousClock()
        let start = clock.now
        var closedAfter: Duration?
        while clock.now - start < .seconds(50), closedAfter == nil {
            try await Task.sleep(for: .seconds(2))
            var byte: UInt8 = 0
            let peeked = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
            if peeked == 0 || (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || send(fd, "x", 1, Int32(MSG_NOSIGNAL)) < 0 {
                closedAfter = clock.now - start
            }
        }
        let after = try #require(closedAfter, "a trickled body held its connection for 50 s")
        #expect(after > .seconds(20), "closed after \(after): before the body's 30 s")
    }
}
