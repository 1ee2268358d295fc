import DispatchCore
import Foundation
import Testing

/// Tokens and cost as each CLI reports them (CONTRACT §11), read from its own events and named alike: input with the
/// cached tokens among it, output with the reasoning among it, `nil` for what a CLI does not say.
@Suite struct AgentUsageTests {
    @Test func codexTurnCompletedGivesTheThreadsTokensAndNoCost() {
        let stdout = """
            {"type":"thread.started","thread_id":"t1"}
            {"type":"turn.completed","usage":{"input_tokens":1200,"cached_input_tokens":800,"cache_write_input_tokens":0,"output_tokens":90,"reasoning_output_tokens":40}}
            """
        let usage = CodexAdapter().parse(stdout: stdout).usage
        #expect(usage == AgentUsage(inputTokens: 1200, cachedInputTokens: 800, outputTokens: 90, reasoningTokens: 40))
        // An older codex: no cached or reasoning figures, and they stay unknown rather than zero.
        let older = CodexAdapter().parse(stdout: #"{"type":"turn.completed","usage":{"input_tokens":5,"output_tokens":2}}"#).usage
        #expect(older == AgentUsage(inputTokens: 5, outputTokens: 2))
        #expect(CodexAdapter().parse(stdout: #"{"type":"turn.completed"}"#).usage == nil)
    }

    @Test func claudesResultGivesTokensWithItsCacheAndTheCost() {
        let stdout = """
            {"type":"system","subtype":"init","model":"claude-sonnet"}
            {"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.0421,"usage":{"input_tokens":30,"cache_creation_input_tokens":10,"cache_read_input_tokens":960,"output_tokens":75,"output_tokens_details":{"thinking_tokens":20},"server_tool_use":{"web_search_requests":0}},"modelUsage":{"claude-sonnet":{"inputTokens":30}}}
            """
        let usage = ClaudeAdapter().parse(stdout: stdout).usage
        #expect(usage == AgentUsage(inputTokens: 1000, cachedInputTokens: 960, outputTokens: 75, reasoningTokens: 20, costUsd: 0.0421))
        // A failed result still says what it cost.
        let failed = ClaudeAdapter().parse(stdout: #"{"type":"result","subtype":"error_max_turns","is_error":true,"total_cost_usd":0.5}"#)
        #expect(failed.reportedError != nil && failed.usage == AgentUsage(costUsd: 0.5))
        #expect(ClaudeAdapter().parse(stdout: #"{"type":"result","result":"x","usage":"odd"}"#).usage == nil)
    }

    @Test func codexKeepsTheLastTurnsTotalsNotTheirSum() {
        let stdout = [
            #"{"type":"turn.completed","usage":{"input_tokens":100,"output_tokens":10}}"#,
            #"{"type":"turn.completed","usage":{"input_tokens":250,"output_tokens":30}}"#,
        ].joined(separator: "\n")
        #expect(CodexAdapter().parse(stdout: stdout).usage == AgentUsage(inputTokens: 250, outputTokens: 30))
    }

    /// pi's `agent_end` repeats every message of the run once: when it is there its sum is the run's (an early
    /// `message_end` may have fallen out of the parsed window).
    @Test func piTakesTheRunsMessagesFromAgentEnd() {
        let message = { (tokens: Int) in
            #"{"role":"assistant","content":[{"type":"text","text":"t"}],"usage":{"input":\#(tokens),"output":1}}"#
        }
        let stdout = [#"{"type":"message_end","message":\#(message(7))}"#, #"{"type":"agent_end","messages":[\#(message(5)),\#(message(7))]}"#]
            .joined(separator: "\n")
        #expect(PiAdapter().parse(stdout: stdout).usage == AgentUsage(inputTokens: 12, outputTokens: 2))
    }

    /// A run ended before its `result` (timed out, cancelled) still says what its model calls used: each message's
    /// usage once (a message is printed again with each content block; its last print wins), no cost.
    @Test func claudeWithoutAResultAddsUpItsMessages() {
        let message = { (id: String, output: Int) in
            #"{"type":"assistant","message":{"id":"\#(id)","role":"assistant","content":[{"type":"text","text":"t"}],"usage":{"input_tokens":3,"cache_read_input_tokens":7,"output_tokens":\#(output)}}}"#
        }
        let stdout = [message("m1", 1), message("m1", 4), message("m2", 6)].joined(separator: "\n")
        #expect(ClaudeAdapter().parse(stdout: stdout).usage == AgentUsage(inputTokens: 20, cachedInputTokens: 14, outputTokens: 10))
        // With a result, the result's figures (the session's) are the attempt's.
        let ended = stdout + "\n" + #"{"type":"result","result":"x","total_cost_usd":0.2,"usage":{"input_tokens":1,"output_tokens":2}}"#
        #expect(ClaudeAdapter().parse(stdout: ended).usage == AgentUsage(inputTokens: 1, outputTokens: 2, costUsd: 0.2))
    }

    @Test func piAddsUpEachModelCallOnce() {
        let message = { (tokens: Int) in
            #"{"role":"assistant","content":[{"type":"text","text":"t"}],"usage":{"input":\#(tokens),"cacheRead":1,"cacheWrite":0,"output":2,"cost":{"total":0.25}}}"#
        }
        let stdout = [
            #"{"type":"message_end","message":\#(message(10))}"#, #"{"type":"turn_end","message":\#(message(10))}"#,
            #"{"type":"message_end","message":\#(message(20))}"#, #"{"type":"agent_end","messages":[\#(message(10)),\#(message(20))]}"#,
        ].joined(separator: "\n")
        #expect(PiAdapter().parse(stdout: stdout).usage == AgentUsage(inputTokens: 32, cachedInputTokens: 2, outputTokens: 4, costUsd: 0.5))
    }

    /// What a CLI prints is the agent's: figures no attempt can have (negative, past the bounds, not finite) read as
    /// unknown, so no sum or counter can overflow (a trap would end the runner) and every result stays encodable.
    @Test func hostileFiguresReadAsUnknown() throws {
        let max = Int.max
        let claude =
            #"{"type":"result","result":"x","total_cost_usd":1e400,"usage":{"input_tokens":\#(max),"cache_read_input_tokens":\#(max),"output_tokens":-5}}"#
        let usage = ClaudeAdapter().parse(stdout: claude).usage
        #expect(usage == nil, "\(String(describing: usage))")
        let codex = #"{"type":"turn.completed","usage":{"input_tokens":\#(max),"output_tokens":7}}"#
        #expect(CodexAdapter().parse(stdout: codex).usage == AgentUsage(outputTokens: 7))
        let decoded = try JSONDecoder().decode(AgentUsage.self, from: Data(#"{"inputTokens":-1,"outputTokens":3,"costUsd":-2}"#.utf8))
        #expect(decoded == AgentUsage(outputTokens: 3))
        // A dispatch's sum may pass one attempt's bound, and saturates rather than trapping.
        let many = AgentUsage.sum(Array(repeating: AgentUsage(inputTokens: AgentUsage.maxTokens), count: 1000))
        #expect(many?.inputTokens == 1000 * AgentUsage.maxTokens)
        var huge = AgentUsage()
        huge.inputTokens = Int.max
        #expect(AgentUsage.sum([huge, huge])?.inputTokens == Int.max)
        // A job-runner's report with one odd figure keeps the others.
        let odd = try JSONDecoder().decode(AgentUsage.self, from: Data(#"{"inputTokens":1.5,"outputTokens":4,"costUsd":"x"}"#.utf8))
        #expect(odd == AgentUsage(outputTokens: 4))
    }

    @Test func attemptsAreSummedFigureByFigureAndUnknownStaysNull() throws {
        let sum = AgentUsage.sum([
            AgentUsage(inputTokens: 10, outputTokens: 1), AgentUsage(), AgentUsage(inputTokens: 5, outputTokens: 2, costUsd: 0.1),
        ])
        #expect(sum == AgentUsage(inputTokens: 15, outputTokens: 3, costUsd: 0.1))
        #expect(AgentUsage.sum([AgentUsage(), AgentUsage()]) == nil)
        let json = String(decoding: try JSONEncoder().encode(AgentUsage(inputTokens: 1)), as: UTF8.self)
        for key in ["\"cachedInputTokens\":null", "\"outputTokens\":null", "\"reasoningTokens\":null", "\"costUsd\":null", "\"inputTokens\":1"] {
            #expect(json.contains(key), "\(json)")
        }
    }
}
