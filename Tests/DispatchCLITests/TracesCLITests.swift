import DispatchTestSupport
import Foundation
import Testing

/// One trace per dispatch over OTLP/HTTP (CONTRACT §11), received by `canaries/otlp_receiver.py` on loopback: the
/// spans, their parent links (the caller's `traceparent` joined) and their attributes; nothing sent without an endpoint.
@Suite(.serialized) struct TracesCLITests {
    let dir = TempDir("traces")
    let receiver: OTLPReceiver
    var port: Int { receiver.port }

    static let traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let callerSpan = "00f067aa0ba902b7"
    static let traceparent = "00-\(traceId)-\(callerSpan)-01"

    init() throws {
        receiver = try OTLPReceiver(in: dir)
    }

    func environment(traced: Bool) -> [String: String] {
        var environment = [
            "DISPATCH_STATE_DIR": dir.child("state"), "DISPATCH_CLAUDE_BIN": TestPaths.fake("claude"), "IS_SANDBOX": "1",
            "DISPATCH_AGENT_ENV": "IS_SANDBOX",
        ]
        if traced {
            environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:\(port)"
            environment["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"
            environment["OTEL_BSP_SCHEDULE_DELAY"] = "100"
        }
        return environment
    }

    /// The spans received so far, one dictionary each.
    func spans() -> [[String: Any]] { receiver.spans }

    func run(_ request: [String: Any], traced: Bool) throws -> [String: Any] {
        let repo = dir.child("repo-\(UUID().uuidString.prefix(6))")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let file = dir.child("request-\(UUID().uuidString.prefix(6)).json")
        var body: [String: Any] = ["requestId": "trace-\(UUID().uuidString.prefix(8))", "tool": "claude", "cwd": repo, "executionMode": "sandbox"]
        body.merge(request) { $1 }
        try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: file))
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--json", "--request", file],
            environment: environment(traced: traced),
            cwd: repo
        )
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
    }

    @Test func aSandboxDispatchIsOneTraceUnderTheCallersSpan() throws {
        let result = try run(
            [
                "task": "fake:write=b.txt:beta fake:usage=100,40,20,5,0.5 fake:answer=traced", "traceparent": Self.traceparent,
                "verificationCommands": ["true"],
            ],
            traced: true
        )
        #expect(result["status"] as? String == "completed", "\(result)")
        let spans = self.spans().filter { $0["traceId"] as? String == Self.traceId }
        let byName = Dictionary(spans.map { ($0["name"] as? String ?? "", $0) }) { first, _ in first }
        let root = try #require(byName["dispatch"], "\(spans)")
        #expect(root["parentSpanId"] as? String == Self.callerSpan, "the dispatch joins the caller's trace: \(root)")
        let rootId = root["spanId"] as? String
        for name in ["admission", "checkout", "agent attempt", "verification", "export"] {
            let span = try #require(byName[name], "no \(name) span in \(spans.map { $0["name"] ?? "" })")
            #expect(span["parentSpanId"] as? String == rootId, "\(name) is the dispatch's child: \(span)")
        }
        let attempt = (byName["agent attempt"]?["attributes"] as? [String: Any]) ?? [:]
        #expect(attempt["dispatch.tool"] as? String == "claude" && attempt["dispatch.model"] as? String == "default", "\(attempt)")
        #expect(attempt["process.exit_code"] as? Int == 0, "\(attempt)")
        #expect(attempt["dispatch.usage.input_tokens"] as? Int == 100 && attempt["dispatch.usage.cost_usd"] as? Double == 0.5, "\(attempt)")
        let rootAttributes = root["attributes"] as? [String: Any] ?? [:]
        #expect(rootAttributes["dispatch.status"] as? String == "completed", "\(rootAttributes)")
        #expect(rootAttributes["dispatch.request_id"] as? String == result["requestId"] as? String)
    }

    @Test func withoutAnEndpointNothingIsSent() throws {
        let before = spans().count
        let result = try run(["task": "fake:answer=untraced", "traceparent": Self.traceparent], traced: false)
        #expect(result["status"] as? String == "completed", "\(result)")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(spans().count == before, "spans were sent without OTEL_EXPORTER_OTLP_ENDPOINT")
    }

    @Test func aBadTraceparentIsRefusedNamingIt() throws {
        let file = dir.child("bad.json")
        let body: [String: Any] = ["requestId": "trace-bad", "tool": "claude", "task": "x", "traceparent": "00-xyz-01"]
        try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: file))
        let outcome = try CommandRunner.run(TestPaths.dispatchBinary, ["run", "--json", "--request", file], environment: environment(traced: false))
        #expect(outcome.exitCode == 2 && outcome.stderr.contains("traceparent"), "\(outcome.stderr)")
    }

    /// Through `serve`: the W3C header joins the caller's trace, and a request that waited has its `queue` span.
    @Test func throughServeTheHeaderJoinsTheTraceAndTheQueueIsASpan() async throws {
        let state = dir.child("serve-state")
        let server = ServerProcess(
            stateDir: state,
            maxConcurrent: 1,
            environment: environment(traced: true).merging(["DISPATCH_STATE_DIR": state]) { $1 }
        )
        try await server.start()
        defer { server.stop() }
        let first = try await server.send(
            .POST,
            "/internal/agent-dispatch",
            body: JSONSerialization.data(withJSONObject: ["requestId": "held", "tool": "claude", "task": "fake:sleep=1 fake:answer=first"])
        )
        #expect(first.status == 202)
        let second = try await server.send(
            .POST,
            "/internal/agent-dispatch",
            body: JSONSerialization.data(withJSONObject: ["requestId": "waited", "tool": "claude", "task": "fake:answer=second"]),
            headers: [("traceparent", "00-\(Self.traceId.reversed().map(String.init).joined())-\(Self.callerSpan)-01")]
        )
        #expect(second.status == 202, "\(second.text)")
        _ = try await server.send(.GET, "/internal/agent-await/waited?timeoutMs=30000")
        let traceId = String(Self.traceId.reversed())
        var spans: [[String: Any]] = []
        for _ in 0..<50 {
            spans = self.spans().filter { $0["traceId"] as? String == traceId }
            if spans.contains(where: { $0["name"] as? String == "dispatch" }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let root = try #require(spans.first { $0["name"] as? String == "dispatch" }, "\(spans)")
        #expect(root["parentSpanId"] as? String == Self.callerSpan)
        let queue = try #require(spans.first { $0["name"] as? String == "queue" }, "\(spans.map { $0["name"] ?? "" })")
        #expect(queue["parentSpanId"] as? String == root["spanId"] as? String)
        let waited = ((queue["end"] as? Int) ?? 0) - ((queue["start"] as? Int) ?? 0)
        #expect(waited > 100_000_000, "the second request waited for the first: \(waited) ns")
    }
}
