import AgentProcess
import DispatchCore
import Execution
import Foundation

/// The JSON report of a canary run: every invariant checked, and whether all hold.
package struct CanaryReport: Codable, Sendable {
    /// One invariant and what was observed.
    package struct Check: Codable, Sendable {
        package var name: String
        package var ok: Bool
        package var detail: String
    }

    package var scenario: String
    package var requestId: String
    package var ok: Bool
    package var wallMs: Int
    package var checks: [Check]
    package var result: DispatchResult?

    package init(scenario: String, requestId: String, wallMs: Int, checks: [Check], result: DispatchResult?) {
        self.scenario = scenario
        self.requestId = requestId
        self.wallMs = wallMs
        self.checks = checks
        self.result = result
        self.ok = !checks.isEmpty && checks.allSatisfy(\.ok)
    }
}

/// The checks of the canary scenarios, independent of how the dispatch was made (in-process or over HTTP).
package enum CanaryChecks {
    /// Request for the orphan-stderr proof: the parent exits 7 at once, its orphan holds stderr for `delaySeconds`.
    package static func orphanStderrRequest(requestId: String, cwd: String, delaySeconds: Int = 2) -> DispatchRequest {
        DispatchRequest(
            requestId: requestId,
            task: "orphan-stderr canary",
            tool: .canary,
            canary: CanarySpec(scenario: .orphanStderr, orphanDelaySeconds: delaySeconds, exitCode: 7),
            timeout: 60,
            cwd: cwd
        )
    }

    /// Checks an orphan-stderr result: failed with `exit 7`, parent's line kept, written promptly, written while
    /// the orphan still held stderr (by the orphan's own record of when it let go), orphan gone. `stderr` reads the
    /// whole stderr log as it stands (the orphan's line lands in it after the result).
    package static func orphanStderr(
        _ result: DispatchResult?,
        wallMs: Int,
        delaySeconds: Int,
        stderr: @Sendable () async -> String
    ) async -> [CanaryReport.Check] {
        guard let result else { return [.init(name: "result", ok: false, detail: "no result")] }
        var checks: [CanaryReport.Check] = []
        checks.append(.init(name: "status-failed", ok: result.status == .failed, detail: "status \(result.status.rawValue)"))
        let error = result.error ?? ""
        checks.append(.init(name: "error-says-exit-7", ok: error.contains("exit 7"), detail: error))
        let tail = result.logs?.stderr ?? ""
        checks.append(
            .init(
                name: "parent-stderr-captured",
                ok: tail.contains("orphan-stderr canary: parent exiting with code 7"),
                detail: tail.trimmingCharacters(in: .whitespacesAndNewlines)
            )
        )
        let completed = result.completedAt.flatMap(ISO8601.date)
        if let attempt = result.attempts.last, let start = ISO8601.date(attempt.startedAt), let completed {
            let exitAt = start.addingTimeInterval(Double(attempt.durationMs) / 1000)
            let latency = Int(completed.timeIntervalSince(exitAt) * 1000)
            checks.append(
                .init(
                    name: "terminal-within-1s-of-parent-exit",
                    ok: latency <= 1000,
                    detail: "result written \(latency)ms after the parent exited"
                )
            )
        } else {
            checks.append(.init(name: "terminal-within-1s-of-parent-exit", ok: false, detail: "no attempt timing in the result"))
        }
        checks.append(await heldWhileWritten(completed, delaySeconds: delaySeconds, stderr: stderr))
        checks.append(
            .init(
                name: "not-stalled-by-orphan",
                ok: wallMs < delaySeconds * 1000,
                detail: "dispatch took \(wallMs)ms; the orphan held stderr for up to \(delaySeconds)s"
            )
        )
        checks.append(await survivorsCheck(result.requestId))
        return checks
    }

    /// The orphan's record of when it let go of stderr, compared with when the result was written: the proof that
    /// the result did not wait for the orphan. Waits for the record up to the delay plus 5 s.
    package static func heldWhileWritten(_ completed: Date?, delaySeconds: Int, stderr: @Sendable () async -> String) async -> CanaryReport.Check {
        let name = "written-while-orphan-held-stderr"
        guard let completed else { return .init(name: name, ok: false, detail: "the result has no completedAt") }
        let marker = "orphan let go of stderr at "
        let clock = ContinuousClock()
        let end = clock.now + .seconds(delaySeconds + 5)
        while true {
            let text = await stderr()
            if let range = text.range(of: marker, options: .backwards) {
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                guard let ms = Double(digits) else { return .init(name: name, ok: false, detail: "unreadable record: \(text.suffix(200))") }
                let letGo = Date(timeIntervalSince1970: ms / 1000)
                let margin = Int(letGo.timeIntervalSince(completed) * 1000)
                return .init(
                    name: name,
                    ok: margin >= 0,
                    detail: margin >= 0
                        ? "result written \(margin)ms before the orphan let go of stderr"
                        : "the orphan let go \(-margin)ms before the result was written: the result waited for it"
                )
            }
            if clock.now >= end { return .init(name: name, ok: false, detail: "the orphan never recorded letting go of stderr") }
            // The record is read through `stderr` (a file here, or a peer's route): looked at again every 100 ms.
            await ProcessRuntime.shared.sleep(for: .milliseconds(100))
        }
    }

    /// Checks that no process of `requestId` is alive once `grace` has passed: a leftover the runner is ending
    /// right now (an orphan that just let go of stderr, swept after the result) is not a survivor.
    package static func survivorsCheck(_ requestId: String, grace: Duration = .seconds(3)) async -> CanaryReport.Check {
        let marker = AgentEnvironment.marker(requestId: requestId)
        let clock = ContinuousClock()
        let end = clock.now + grace
        var survivors = ProcessScanner.find(groupId: nil, marker: marker)
        while !survivors.isEmpty, clock.now < end {
            // Woken by their exits (pidfds), then looked for again: one may have started another.
            _ = await ProcessRuntime.shared.exits(of: survivors, within: end - clock.now)
            survivors = ProcessScanner.find(groupId: nil, marker: marker)
        }
        return .init(
            name: "no-surviving-process",
            ok: survivors.isEmpty,
            detail: survivors.isEmpty ? "no process carries DISPATCH_REQUEST_ID=\(requestId)" : "survivors: \(survivors)"
        )
    }
}

extension CanaryChecks {
    /// Request for the timeout proof: the sleep canary in local sandbox mode with a short budget.
    package static func sleepTimeoutRequest(requestId: String, repo: String, timeoutSeconds: Int, sleepSeconds: Int) -> DispatchRequest {
        DispatchRequest(
            requestId: requestId,
            task: "sleep-timeout canary",
            tool: .canary,
            canary: CanarySpec(scenario: .sleepTimeout, sleepSeconds: sleepSeconds),
            timeout: Double(timeoutSeconds),
            cwd: repo,
            executionMode: .sandbox,
            sandboxBackend: .local
        )
    }

    /// Checks a sleep-timeout result: failed, says timed out, ended within budget + grace + 2 s, nothing survives,
    /// and the sandbox row is terminal (`failed`), not running.
    package static func sleepTimeout(
        _ result: DispatchResult?,
        wallMs: Int,
        timeoutSeconds: Int,
        killGraceMs: Int,
        sandboxState: String?,
        runningSandboxIds: [String]
    ) async -> [CanaryReport.Check] {
        guard let result else { return [.init(name: "result", ok: false, detail: "no result")] }
        let survivors = await survivorsCheck(result.requestId)
        let limitMs = timeoutSeconds * 1000 + killGraceMs + 2000
        let sandboxId = result.localSandbox?.sandboxId
        return [
            .init(name: "status-failed", ok: result.status == .failed, detail: "status \(result.status.rawValue)"),
            .init(name: "error-says-timed-out", ok: result.error?.contains("timed out") == true, detail: result.error ?? ""),
            .init(
                name: "ended-within-budget-plus-grace",
                ok: wallMs <= limitMs,
                detail: "took \(wallMs)ms; limit \(limitMs)ms (budget \(timeoutSeconds * 1000)ms + grace \(killGraceMs)ms + 2000ms)"
            ),
            survivors,
            .init(name: "sandbox-row-failed", ok: sandboxState == "failed", detail: "sandbox \(sandboxId ?? "?") is \(sandboxState ?? "missing")"),
            .init(
                name: "sandbox-not-running",
                ok: sandboxId.map { !runningSandboxIds.contains($0) } ?? false,
                detail: "\(runningSandboxIds.count) sandboxes listed as running"
            ),
        ]
    }
}
