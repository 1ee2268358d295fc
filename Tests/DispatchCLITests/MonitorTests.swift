import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// `dispatch-monitor` on its own: what it refuses, and that it sleeps while the agent does (issue: scale).
@Suite(.serialized) struct MonitorTests {
    let dir = TempDir("monitor")
    var monitor: String { (TestPaths.dispatchBinary as NSString).deletingLastPathComponent + "/dispatch-monitor" }

    @Test(arguments: [
        ["--record", "relative/attempt-1", "--allowed-ms", "1000", "--", "/bin/true"],
        ["--record", "/tmp/x/attempt-1", "--allowed-ms", "10s", "--", "/bin/true"],
        ["--record", "/tmp/x/attempt-1", "--allowed-ms", "-5", "--", "/bin/true"],
        ["--record", "/tmp/x/attempt-1", "--allowed-ms", "1000", "--runner-pid", "0", "--", "/bin/true"],
        ["--record", "/tmp/x/attempt-1", "--allowed-ms", "1000", "--", "true"],
        ["--record", "/tmp/x/attempt-1", "--allowed-ms", "1000", "--grace-ms"],
        ["--record", "/" + String(repeating: "a", count: 4100), "--allowed-ms", "1000", "--", "/bin/true"],
        ["--guard", "--runner-pid", "1", "--", "true"],
    ])
    func badArgumentsExitTwoAndStartNothing(_ arguments: [String]) throws {
        let run = try CommandRunner.run(monitor, arguments, environment: [:], cwd: dir.path)
        #expect(run.exitCode == 2, "\(arguments.prefix(6)): \(run.stderr)")
    }

    static func contextSwitches(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").filter { $0.contains("ctxt_switches") }
            .compactMap { Int($0.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") }.reduce(0, +)
    }

    /// It used to wake every 100 ms; now only a signal, its holder's exit or a deadline wakes it.
    @Test func anIdleMonitorSleepsAndStillEndsItsAgentAtTheDeadline() async throws {
        let record = dir.child("attempt-1")
        let run = try CommandRunner.start(
            monitor,
            [
                "--record", record, "--allowed-ms", "2500", "--slack-ms", "0", "--grace-ms", "200", "--runner-pid", "\(getpid())", "--",
                "/bin/sleep", "60",
            ],
            environment: [:],
            cwd: dir.path
        )
        #expect(await eventually(timeout: .seconds(5)) { MonitorRecord(prefix: record).started() != nil })
        try await Task.sleep(for: .milliseconds(300))
        let before = Self.contextSwitches(run.pid)
        try await Task.sleep(for: .seconds(1))
        let woken = Self.contextSwitches(run.pid) - before
        #expect(woken <= 2, "the monitor woke \(woken) times in a second while its agent slept")
        let result = run.wait()
        #expect(result.exitCode != 0, "it exits as its agent, killed, did")
        let ended = try #require(MonitorRecord(prefix: record).ended())
        #expect(ended.ending == "timedOut")
        #expect(ended.endedAtMs - ended.startedAtMs < 4000)
    }
}
