import AgentProcess
import DispatchCore
import Foundation

/// The JSON report of a canary run: every invariant checked, and whether all hold.
public struct CanaryReport: Codable, Sendable {
    /// One invariant and what was observed.
    public struct Check: Codable, Sendable {
        public var name: String
        public var ok: Bool
        public var detail: String
    }

    public var scenario: String
    public var requestId: String
    public var ok: Bool
    public var wallMs: Int
    public var checks: [Check]
    public var result: DispatchResult?

    public init(scenario: String, requestId: String, wallMs: Int, checks: [Check], result: DispatchResult?) {
        self.scenario = scenario
        self.requestId = requestId
        self.wallMs = wallMs
        self.checks = checks
        self.result = result
        self.ok = !checks.isEmpty && checks.allSatisfy(\.ok)
    }
}

/// The checks of the canary scenarios, independent of how the dispatch was made (in-process or over HTTP).
public enum CanaryChecks {
    /// Request for the orphan-stderr proof.
    public static func orphanStderrRequest(requestId: String, cwd: String, holdSeconds: Int = 60) -> DispatchRequest {
        DispatchRequest(
            requestId: requestId, task: "orphan-stderr canary", tool: .canary,
            canary: CanarySpec(scenario: .orphanStderr, orphanDelaySeconds: 2, orphanHoldSeconds: holdSeconds, exitCode: 7),
            timeout: 60, cwd: cwd)
    }

    /// Checks an orphan-stderr result: failed with `exit 7`, parent's line kept, written promptly, orphan gone.
    public static func orphanStderr(_ result: DispatchResult?, wallMs: Int, holdSeconds: Int) -> [CanaryReport.Check] {
        guard let result else { return [.init(name: "result", ok: false, detail: "no result")] }
        var checks: [CanaryReport.Check] = []
        checks.append(.init(name: "status-failed", ok: result.status == .failed, detail: "status \(result.status.rawValue)"))
        let error = result.error ?? ""
        checks.append(.init(name: "error-says-exit-7", ok: error.contains("exit 7"), detail: error))
        let stderr = result.logs?.stderr ?? ""
        checks.append(.init(
            name: "parent-stderr-captured", ok: stderr.contains("orphan-stderr canary: parent exiting with code 7"),
            detail: stderr.trimmingCharacters(in: .whitespacesAndNewlines)))
        if let attempt = result.attempts.last, let start = ISO8601.date(attempt.startedAt),
            let completed = result.completedAt.flatMap(ISO8601.date)
        {
            let exitAt = start.addingTimeInterval(Double(attempt.durationMs) / 1000)
            let latency = Int(completed.timeIntervalSince(exitAt) * 1000)
            checks.append(.init(
                name: "terminal-within-1s-of-parent-exit", ok: latency <= 1000,
                detail: "result written \(latency)ms after the parent exited"))
        } else {
            checks.append(.init(name: "terminal-within-1s-of-parent-exit", ok: false, detail: "no attempt timing in the result"))
        }
        checks.append(.init(
            name: "not-stalled-by-orphan", ok: wallMs < holdSeconds * 1000,
            detail: "dispatch took \(wallMs)ms; the orphan held stderr for up to \(holdSeconds)s"))
        checks.append(survivorsCheck(result.requestId))
        return checks
    }

    /// Checks that no process of `requestId` is alive.
    public static func survivorsCheck(_ requestId: String) -> CanaryReport.Check {
        let survivors = ProcessScanner.find(groupId: nil, marker: AgentEnvironment.marker(requestId: requestId))
        return .init(
            name: "no-surviving-process", ok: survivors.isEmpty,
            detail: survivors.isEmpty ? "no process carries DISPATCH_REQUEST_ID=\(requestId)" : "survivors: \(survivors)")
    }
}

extension CanaryChecks {
    /// Request for the timeout proof: the sleep canary in local sandbox mode with a short budget.
    public static func sleepTimeoutRequest(requestId: String, repo: String, timeoutSeconds: Int, sleepSeconds: Int) -> DispatchRequest {
        DispatchRequest(
            requestId: requestId, task: "sleep-timeout canary", tool: .canary,
            canary: CanarySpec(scenario: .sleepTimeout, sleepSeconds: sleepSeconds), timeout: Double(timeoutSeconds), cwd: repo,
            executionMode: .sandbox, sandboxBackend: .local)
    }

    /// Checks a sleep-timeout result: failed, says timed out, ended within budget + grace + 2 s, nothing survives,
    /// and the sandbox row is terminal (`failed`), not running.
    public static func sleepTimeout(
        _ result: DispatchResult?, wallMs: Int, timeoutSeconds: Int, killGraceMs: Int, sandboxState: String?, runningSandboxIds: [String]
    ) -> [CanaryReport.Check] {
        guard let result else { return [.init(name: "result", ok: false, detail: "no result")] }
        let limitMs = timeoutSeconds * 1000 + killGraceMs + 2000
        let sandboxId = result.localSandbox?.sandboxId
        return [
            .init(name: "status-failed", ok: result.status == .failed, detail: "status \(result.status.rawValue)"),
            .init(name: "error-says-timed-out", ok: result.error?.contains("timed out") == true, detail: result.error ?? ""),
            .init(
                name: "ended-within-budget-plus-grace", ok: wallMs <= limitMs,
                detail: "took \(wallMs)ms; limit \(limitMs)ms (budget \(timeoutSeconds * 1000)ms + grace \(killGraceMs)ms + 2000ms)"),
            survivorsCheck(result.requestId),
            .init(name: "sandbox-row-failed", ok: sandboxState == "failed", detail: "sandbox \(sandboxId ?? "?") is \(sandboxState ?? "missing")"),
            .init(
                name: "sandbox-not-running", ok: sandboxId.map { !runningSandboxIds.contains($0) } ?? false,
                detail: "\(runningSandboxIds.count) sandboxes listed as running"),
        ]
    }
}
