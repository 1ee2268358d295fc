import DispatchCore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Testing

@Suite(.serialized) struct DispatchMetricsTests {
    /// The value of an unlabelled sample in a Prometheus text exposition.
    func sample(_ name: String, in text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("\(name) ") }.map { String($0.dropFirst(name.count + 1)) }
    }

    @Test func timeoutsAreCountedByTheirCaseNotByTheirWords() async throws {
        let fixture = try EngineFixture(killGraceMs: 500)
        // An agent whose own stderr says "timed out after": a failure, not a budget that ran out.
        let wordy = try await fixture.run(fixture.request(.codex, "fake:stderr=upstream%20timed%20out%20after%205s fake:exit=3"))
        #expect(wordy.status == .failed)
        #expect(wordy.error?.contains("timed out after") == true, "the words are there: \(wordy.error ?? "")")
        var text = fixture.engine.metrics.render(running: 0, queued: 0, waiters: 0)
        #expect(sample("dispatch_timeouts_total", in: text) == "0", "\(text)")
        #expect(text.contains("dispatch_dispatches_total{tool=\"codex\",status=\"failed\"} 1"), "\(text)")

        let slow = try await fixture.run(fixture.request(.codex, "fake:hang", timeout: 1.5))
        #expect(slow.error?.contains("timed out after") == true, "\(slow.error ?? "")")
        text = fixture.engine.metrics.render(running: 0, queued: 0, waiters: 0)
        #expect(sample("dispatch_timeouts_total", in: text) == "1", "\(text)")
        #expect(sample("dispatch_process_kills_total", in: text).map { Int($0) ?? 0 >= 1 } == true, "the hung agent was killed")
    }

    /// CONTRACT §1's silent no-op guard: a command the CLI's own sandbox refused (codex's bubblewrap inside another)
    /// is a warning of its attempt and counted, though the turn completed; a recovered stream error is a warning too.
    @Test func commandsACLIsOwnSandboxRefusedAreWarnedAboutAndCounted() async throws {
        let fixture = try EngineFixture()
        let quiet = try await fixture.run(fixture.request(.codex, "fake:answer=fine"))
        #expect(quiet.attempts.first?.warnings == nil)
        let result = try await fixture.run(fixture.request(.codex, "fake:nested-sandbox fake:recovered-error fake:answer=nothing-changed"))
        #expect(result.status == .completed, "\(result.error ?? "")")
        let warnings = try #require(result.attempts.first?.warnings)
        #expect(warnings.contains { $0.hasPrefix("sandbox: codex's own sandbox refused") && $0.contains("bwrap: setting up uid map") }, "\(warnings)")
        #expect(warnings.contains { $0.hasPrefix("recovered: Reconnecting... 1/5") }, "\(warnings)")
        let text = fixture.engine.metrics.render(running: 0, queued: 0, waiters: 0)
        #expect(sample("dispatch_agent_sandbox_refusals_total", in: text) == "1", "\(text)")
        let inbox = try String(contentsOfFile: fixture.engine.store.inboxPath(result.requestId), encoding: .utf8)
        #expect(inbox.contains("\"warnings\""), "the warnings are in the stored result")
    }

    @Test func failureSentencesComeFromOnePlace() {
        let timeout = DispatchFailure.timedOut(.init(subject: "codex", elapsedMs: 5000, budgetMs: 9000, moment: .during("agent attempt 2/3")))
        #expect(timeout.description == "codex timed out after 5000ms (budget 9000ms) during agent attempt 2/3")
        #expect(timeout.isTimeout)
        let before = DispatchFailure.timedOut(
            .init(subject: "verification", elapsedMs: 10, budgetMs: 20, moment: .before("verification command 1/1"))
        )
        #expect(before.description == "verification timed out after 10ms (budget 20ms) before verification command 1/1 could start")
        let left = DispatchFailure.timedOut(
            .init(
                subject: "pi",
                elapsedMs: 2500,
                budgetMs: 3000,
                moment: .notEnoughLeft(remainingMs: 500, toStart: "agent attempt 3/3"),
                detail: "; previous attempt: x"
            )
        )
        #expect(
            left.description
                == "pi timed out after 2500ms (budget 3000ms): only 500ms left, not enough to start agent attempt 3/3; previous attempt: x"
        )
        #expect(
            DispatchFailure.exited(tool: "codex", code: 2, stderrTail: "boom", during: "agent attempt 1/1").description
                == "codex failed during agent attempt 1/1: exit 2: boom"
        )
        #expect(
            DispatchFailure.signaled(tool: "claude", signal: SIGSEGV, during: "agent attempt 1/1").description
                == "claude was killed by signal \(SIGSEGV) (SIGSEGV) during agent attempt 1/1"
        )
        #expect(!DispatchFailure.message("upstream timed out after 5s").isTimeout)
        var result = DispatchResult(request: DispatchRequest(requestId: "r", task: "t", tool: .codex), status: .running)
        result.fail(.cancelled(reason: "cancelled by request"))
        #expect(result.status == .cancelled && result.error == "cancelled by request")
        var decoded = try? JSONDecoder().decode(DispatchResult.self, from: JSONEncoder().encode(result))
        #expect(decoded == result, "the typed failure is neither stored nor compared")
        decoded?.failure = nil
        #expect(decoded?.error == "cancelled by request")
    }
}
