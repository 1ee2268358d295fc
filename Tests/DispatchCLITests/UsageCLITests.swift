import DispatchTestSupport
import Foundation
import Testing

/// Tokens and cost per attempt and per dispatch (CONTRACT §11), through the real `dispatch`: the fake CLIs report
/// known figures in their own events' shapes, and the result, its attempts and `/metrics` show exactly them.
@Suite(.serialized) struct UsageCLITests {
    let dir = TempDir("usage")

    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        [
            "DISPATCH_STATE_DIR": dir.child("state"), "DISPATCH_CLAUDE_BIN": TestPaths.fake("claude"), "DISPATCH_CODEX_BIN": TestPaths.fake("codex"),
            "IS_SANDBOX": "1", "DISPATCH_AGENT_ENV": "IS_SANDBOX",
        ].merging(extra) { $1 }
    }

    func run(_ arguments: [String], environment: [String: String]) throws -> [String: Any] {
        let repo = dir.child("repo-\(UUID().uuidString.prefix(6))")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--json", "--mode", "sandbox"] + arguments,
            environment: environment,
            cwd: repo
        )
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
    }

    static func usage(_ object: Any?) -> [String: Any] { object as? [String: Any] ?? [:] }

    @Test func claudesTokensAndCostReachTheAttemptAndTheResult() throws {
        let result = try run(["--tool", "claude", "--task", "fake:usage=100,40,20,5,0.0123 fake:answer=ok"], environment: environment())
        #expect(result["status"] as? String == "completed", "\(result)")
        let attempt = Self.usage((result["attempts"] as? [[String: Any]])?.first?["usage"])
        let total = Self.usage(result["usage"])
        for usage in [attempt, total] {
            #expect(usage["inputTokens"] as? Int == 100 && usage["cachedInputTokens"] as? Int == 40, "\(usage)")
            #expect(usage["outputTokens"] as? Int == 20 && usage["reasoningTokens"] as? Int == 5, "\(usage)")
            #expect(usage["costUsd"] as? Double == 0.0123, "\(usage)")
        }
    }

    /// A fallback run sums its attempts; a failed attempt whose CLI said nothing has `null` figures, and codex (which
    /// reports no cost) leaves the cost `null` rather than zero.
    @Test func fallbackAttemptsAreSummedAndWhatNoCLISaidStaysNull() throws {
        let result = try run(
            ["--tool", "codex", "--model", "gone", "--fallback-model", "good", "--task", "fake:usage=50,10,8,3 fake:answer=ok"],
            environment: environment(["FAKE_AGENT_FAIL_MODELS": "gone"])
        )
        #expect(result["status"] as? String == "completed", "\(result)")
        let attempts = result["attempts"] as? [[String: Any]] ?? []
        #expect(attempts.count == 2)
        let first = Self.usage(attempts.first?["usage"])
        #expect(first.keys.count == 5 && first.values.allSatisfy { $0 is NSNull }, "\(first)")
        let total = Self.usage(result["usage"])
        #expect(total["inputTokens"] as? Int == 50 && total["cachedInputTokens"] as? Int == 10, "\(total)")
        #expect(total["outputTokens"] as? Int == 8 && total["reasoningTokens"] as? Int == 3, "\(total)")
        #expect(total["costUsd"] is NSNull, "\(total)")
    }

    @Test func metricsCountTokensByKindAndCostByToolAndModel() async throws {
        let server = ServerProcess(stateDir: dir.child("serve-state"), environment: environment(["DISPATCH_STATE_DIR": dir.child("serve-state")]))
        try await server.start()
        defer { server.stop() }
        for (id, model) in [("u1", "m1"), ("u2", "m1"), ("u3", "m2")] {
            let body: [String: Any] = ["requestId": id, "tool": "claude", "model": model, "task": "fake:usage=100,40,20,5,0.25 fake:answer=ok"]
            #expect(try await server.dispatch(body).status == 202)
            _ = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000")
        }
        let metrics = try await server.send(.GET, "/metrics").text
        for line in [
            #"dispatch_tokens_total{tool="claude",model="m1",kind="input"} 200"#,
            #"dispatch_tokens_total{tool="claude",model="m1",kind="cached_input"} 80"#,
            #"dispatch_tokens_total{tool="claude",model="m2",kind="output"} 20"#,
            #"dispatch_tokens_total{tool="claude",model="m2",kind="reasoning"} 5"#,
            #"dispatch_cost_usd_total{tool="claude",model="m1"} 0.5"#,
            #"dispatch_cost_usd_total{tool="claude",model="m2"} 0.25"#,
        ] {
            #expect(metrics.contains(line), "\(line) in \(metrics)")
        }
    }
}
