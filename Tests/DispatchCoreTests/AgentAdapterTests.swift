import DispatchCore
import Foundation
import Testing

@Suite struct AgentAdapterTests {
    let request = DispatchRequest(requestId: "r", task: "fix the bug", tool: .codex, sandbox: .workspaceWrite)

    @Test func codexArgv() {
        let invocation = CodexAdapter().invocation(request: request, task: "fix the bug", model: "o3", program: "/bin/codex")
        // codex 0.147 removed --full-auto: the sandbox flag is --sandbox PROFILE, or, inside this runner's own isolation
        // (codex's own sandbox cannot nest there), --dangerously-bypass-approvals-and-sandbox — never both.
        #expect(invocation.arguments == ["exec", "--json", "--sandbox", "workspace-write", "-m", "o3", "fix the bug"])
        #expect(invocation.stdinText == nil)
        let isolated = CodexAdapter.underRunnerIsolation(invocation)
        #expect(isolated.arguments == ["exec", "--json", "--dangerously-bypass-approvals-and-sandbox", "-m", "o3", "fix the bug"])
        let outside = CodexAdapter.outsideGitRepository(isolated)
        #expect(outside.arguments.prefix(4) == ["exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"])
        var readOnly = request
        readOnly.sandbox = nil
        #expect(CodexAdapter().invocation(request: readOnly, task: "t", model: nil, program: "codex").arguments.contains("workspace-write"))
    }

    /// Judged by the final event: a recovered `error` ("Reconnecting... 1/5") before `turn.completed` is no failure;
    /// `turn.failed` is, with its message; Claude's `result` with an error subtype is too.
    @Test func theFinalEventJudges() {
        let recovered = [
            #"{"type":"thread.started","thread_id":"t"}"#, #"{"type":"error","message":"Reconnecting... 1/5"}"#,
            #"{"type":"item.completed","item":{"type":"agent_message","text":"done"}}"#, #"{"type":"turn.completed"}"#,
        ].joined(separator: "\n")
        let ok = CodexAdapter().parse(stdout: recovered)
        #expect(ok.reportedError == nil && ok.finalText == "done" && ok.sawFinalEvent)
        let failed = CodexAdapter().parse(stdout: #"{"type":"turn.failed","error":{"message":"stream disconnected before completion"}}"#)
        #expect(failed.reportedError == "stream disconnected before completion" && failed.sawFinalEvent)
        let unfinished = CodexAdapter().parse(stdout: #"{"type":"error","message":"Reconnecting... 5/5"}"#)
        #expect(unfinished.reportedError == "Reconnecting... 5/5", "an error no turn event follows is the failure")
        let claude = ClaudeAdapter().parse(stdout: #"{"type":"result","subtype":"error_max_turns","is_error":false,"result":"stopped"}"#)
        #expect(claude.reportedError == "stopped (error_max_turns)")
    }

    @Test func claudeArgv() {
        let invocation = ClaudeAdapter().invocation(request: request, task: "fix the bug", model: "sonnet", program: "claude")
        #expect(
            invocation.arguments == [
                "-p", "fix the bug", "--dangerously-skip-permissions", "--output-format", "stream-json", "--verbose", "--model", "sonnet",
            ]
        )
    }

    @Test func piArgvPutsThePromptOnStdin() {
        var piRequest = request
        piRequest.readFiles = nil
        let invocation = PiAdapter().invocation(request: piRequest, task: "fix the bug", model: "m", program: "pi")
        #expect(invocation.arguments == ["-p", "--no-session", "--mode", "json", "--no-extensions", "--no-tools", "--models", "m"])
        #expect(invocation.stdinText == "fix the bug")
        piRequest.readFiles = true
        #expect(!PiAdapter().invocation(request: piRequest, task: "t", model: nil, program: "pi").arguments.contains("--no-tools"))
    }

    @Test func longOrDashLeadingTasksGoThroughStdin() {
        let long = String(repeating: "a", count: 200_000)
        let codex = CodexAdapter().invocation(request: request, task: long, model: nil, program: "codex")
        #expect(codex.arguments.last == "-")
        #expect(codex.stdinText == long)
        let claude = ClaudeAdapter().invocation(request: request, task: "--version", model: nil, program: "claude")
        #expect(!claude.arguments.contains("--version"))
        #expect(claude.stdinText == "--version")
    }

    @Test func parsesCodexEvents() {
        let out = """
            {"type":"thread.started"}
            {"type":"item.completed","item":{"type":"agent_message","text":"first"}}
            {"type":"item.completed","item":{"type":"agent_message","text":"final answer"}}
            {"type":"turn.completed"}
            """
        #expect(CodexAdapter().parse(stdout: out) == ParsedAgentOutput(finalText: "final answer", sawFinalEvent: true))
        let legacy = #"{"msg":{"type":"task_complete","last_agent_message":"legacy"}}"#
        #expect(CodexAdapter().parse(stdout: legacy).finalText == "legacy")
        #expect(CodexAdapter().parse(stdout: "plain text\n").finalText == "plain text")
    }

    @Test func parsesClaudeResultEvent() {
        let out = """
            {"type":"system","subtype":"init"}
            {"type":"assistant","message":{"content":[{"type":"text","text":"thinking"}]}}
            {"type":"result","subtype":"success","is_error":false,"result":"done!"}
            """
        #expect(ClaudeAdapter().parse(stdout: out) == ParsedAgentOutput(finalText: "done!", sawFinalEvent: true))
        let partial = #"{"type":"assistant","message":{"content":[{"type":"text","text":"still going"}]}}"#
        #expect(ClaudeAdapter().parse(stdout: partial).sawFinalEvent == false)
        let failed = #"{"type":"result","is_error":true,"result":"rate limited"}"#
        #expect(ClaudeAdapter().parse(stdout: failed).reportedError == "rate limited")
    }

    @Test func parsesPiEventStream() {
        let out = """
            {"type":"session","id":"s"}
            {"type":"message_end","message":{"role":"user","content":[{"type":"text","text":"prompt"}]}}
            {"type":"message_end","message":{"role":"assistant","content":[{"type":"text","text":"part one "},{"type":"text","text":"and two"}]}}
            {"type":"turn_end","message":{"role":"assistant","content":[{"type":"text","text":"part one and two"}]}}
            not json at all
            """
        #expect(PiAdapter().parse(stdout: out).finalText == "part one and two")
        #expect(PiAdapter().parse(stdout: #"{"type":"agent_start"}"#).finalText == nil)
        #expect(PiAdapter().requiresOutput)
    }

    @Test func oddFieldsReadAsMissingAndMalformedLinesAreSkipped() {
        let codex = """
            {"type":"item.completed","item":{"type":"agent_message","text":"kept"}}
            {"type":"item.completed","item":{"type":"agent_message","text":5}}
            {"type":"turn.completed","usage":"n/a"}
            """
        #expect(CodexAdapter().parse(stdout: codex) == ParsedAgentOutput(finalText: "kept", sawFinalEvent: true))
        let claude = """
            {"type":"assistant","message":{"content":[{"type":"text","text":"a"},7]}}
            {"type":"result","is_error":"yes","result":5}
            """
        #expect(ClaudeAdapter().parse(stdout: claude) == ParsedAgentOutput(finalText: nil, sawFinalEvent: true))
        #expect(ClaudeAdapter().parse(stdout: #"{"type":"result","is_error":1,"result":"x"}"#).reportedError == "x")
        let pi = """
            {"type":"message_end","message":{"role":"assistant","content":"first"}}
            {"type":"agent_end","messages":[{"role":"assistant","content":"dropped"},1]}
            {"type":"turn_end","message":{"role":"assistant","content":"bad \\ud800"}}
            {"type":"turn_end","message":{"role":"assistant","content":"bad number"},"n":01}
            """
        #expect(PiAdapter().parse(stdout: pi).finalText == "first")
    }

    @Test func canaryScriptsCarryOnlyNumbers() {
        let canary = DispatchRequest(
            requestId: "c",
            task: "$(rm -rf /)",
            tool: .canary,
            canary: CanarySpec(scenario: .orphanStderr, orphanDelaySeconds: 1, exitCode: 5)
        )
        let invocation = CanaryAdapter().invocation(request: canary, task: canary.task, model: nil, program: "/bin/sh")
        #expect(invocation.program == "/bin/sh")
        #expect(!invocation.arguments.joined().contains("rm -rf"))
        #expect(invocation.arguments[1].contains("exit 5"))
    }

    @Test func resultTextKeepsTheLast50000Characters() {
        var result = DispatchResult(request: request, status: .completed)
        result.setResultText(String(repeating: "a", count: 10) + String(repeating: "b", count: 50_000))
        #expect(result.result?.count == 50_000)
        #expect(result.result?.first == "b")
    }

    @Test func deadlineCountsDown() async throws {
        let deadline = Deadline(budgetMs: 200)
        #expect(deadline.remainingMs <= 200 && deadline.remainingMs > 0, "a fresh deadline has (nearly) its whole budget")
        #expect(!deadline.isExpired)
        try await Task.sleep(for: .milliseconds(250))
        #expect(deadline.isExpired)
        #expect(deadline.remaining == .zero)
    }

    @Test func timestampsAreUTCWithZ() {
        let string = ISO8601.string(Date(timeIntervalSince1970: 0))
        #expect(string == "1970-01-01T00:00:00.000Z")
        #expect(ISO8601.date(string) == Date(timeIntervalSince1970: 0))
    }
}
