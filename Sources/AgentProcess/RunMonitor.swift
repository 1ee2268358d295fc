import Foundation

/// The per-run monitor (`dispatch-monitor`, CONTRACT §7) that holds one isolated agent attempt, so the attempt
/// outlives the `serve` that started it: it enforces the attempt's deadline itself, ends a run nobody adopts
/// within a lease, and records how the agent ended in files beside the attempt's logs.
package struct MonitorSpec: Sendable, Equatable {
    /// The `dispatch-monitor` executable.
    package var program: String
    /// The attempt's record files: `<prefix>.monitor`, `<prefix>.owner`, `<prefix>.status`.
    package var recordPrefix: String
    /// The attempt's share of the budget.
    package var allowedMs: Int
    /// How long after `allowedMs` the monitor ends the agent itself (a live runner ends it first, at `allowedMs`).
    package var slackMs: Int
    /// SIGTERM → SIGKILL grace of the monitor's own kills.
    package var graceMs: Int
    /// How long a monitor whose runner is gone waits to be adopted before it ends the run.
    package var leaseMs: Int
    /// The run's agent uid lease file, held by the monitor for as long as it lives (``AgentUidLeases``).
    package var uidLease: String?

    /// A monitor for one attempt.
    package init(program: String, recordPrefix: String, allowedMs: Int, slackMs: Int, graceMs: Int, leaseMs: Int) {
        self.program = program
        self.recordPrefix = recordPrefix
        self.allowedMs = allowedMs
        self.slackMs = slackMs
        self.graceMs = graceMs
        self.leaseMs = leaseMs
    }

    /// The monitor's argv in front of the command it holds.
    func argv(runner: pid_t) -> [String] {
        [
            "dispatch-monitor", "--record", recordPrefix, "--allowed-ms", "\(allowedMs)", "--slack-ms", "\(slackMs)",
            "--grace-ms", "\(graceMs)", "--lease-ms", "\(leaseMs)", "--runner-pid", "\(runner)",
        ] + (uidLease.map { ["--uid-lease", $0] } ?? []) + ["--"]
    }

    /// `dispatch-monitor` beside the running executable (`DISPATCH_MONITOR_BIN` overrides), or `nil` when absent.
    package static func locateProgram(environment: [String: String]) -> String? {
        if let configured = environment["DISPATCH_MONITOR_BIN"], !configured.isEmpty {
            return FileManager.default.isExecutableFile(atPath: configured) ? configured : nil
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let sibling = executable.deletingLastPathComponent().appendingPathComponent("dispatch-monitor").path
        return FileManager.default.isExecutableFile(atPath: sibling) ? sibling : nil
    }
}

/// The record files of one monitored attempt, read by whoever adopts it.
package struct MonitorRecord: Sendable {
    /// What the monitor wrote before the agent started.
    package struct Started: Decodable, Sendable, Equatable {
        package var pid: Int32
        package var startTime: UInt64
        /// The boot the pid belongs to.
        package var bootId: String?
        package var startedAtMs: Int64
        /// `CLOCK_BOOTTIME` at the start: the attempt's elapsed time, immune to wall-clock steps.
        package var startedAtBootMs: Int64?
        package var allowedMs: Int
    }

    /// What the monitor wrote once the agent had ended.
    package struct Ended: Decodable, Sendable, Equatable {
        /// `exited`, `timedOut` (the monitor ended it at the deadline) or `runnerLost` (nobody adopted the run).
        package var ending: String
        package var exitCode: Int
        package var signal: Int
        package var startedAtMs: Int64
        package var endedAtMs: Int64

        /// The wait status word the monitor's parent would have seen.
        var waitStatus: Int32 {
            if exitCode >= 0 { return Int32(exitCode & 0xff) << 8 }
            return Int32(signal > 0 ? signal : Int(SIGKILL))
        }
    }

    /// Where the monitored attempt stands.
    package enum State: Sendable, Equatable {
        /// The monitor lives: the run can be adopted.
        case alive(Started)
        /// The agent ended (`Ended.ending` says how) and the monitor recorded it.
        case ended(Started?, Ended)
        /// A monitor was started but is gone without a record (killed, or the machine restarted).
        case gone(Started)
        /// No monitor held this attempt.
        case none
    }

    /// `<logs>/attempt-N`: the prefix of the record files.
    package let prefix: String

    /// The record of the attempt whose stdout goes to `stdoutPath` (`…/attempt-N.stdout.log`).
    package init?(stdoutPath: String) {
        let suffix = ".stdout.log"
        guard stdoutPath.hasSuffix(suffix) else { return nil }
        prefix = String(stdoutPath.dropLast(suffix.count))
    }

    /// The record under `prefix`.
    package init(prefix: String) {
        self.prefix = prefix
    }

    var startedPath: String { "\(prefix).monitor" }
    var ownerPath: String { "\(prefix).owner" }
    var statusPath: String { "\(prefix).status" }

    /// What the monitor recorded at its start.
    package func started() -> Started? { Self.decode(startedPath) }

    /// What the monitor recorded at the agent's end.
    package func ended() -> Ended? { Self.decode(statusPath) }

    /// The attempt's state now. A record from another boot is `gone` (its pid means nothing here).
    package func state() -> State {
        let started = started()
        if let ended = ended() { return .ended(started, ended) }
        guard let started else { return .none }
        return isRunning(started) ? .alive(started) : .gone(started)
    }

    /// Whether the process the record names is that monitor, alive (on this boot: after a restart of the machine the
    /// pid and start tick may well name another process).
    func isRunning(_ started: Started) -> Bool {
        if let bootId = started.bootId, !bootId.isEmpty, bootId != Self.currentBootId { return false }
        // A failed read of /proc (EMFILE) is not taken for its end: only a positive "gone" is.
        return ProcessScanner.presence(started.pid, startTime: started.startTime) != .gone
    }

    static let currentBootId = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines)

    /// `CLOCK_BOOTTIME` now, in milliseconds (the monitor's clock).
    package static func bootClockMs() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_BOOTTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// How long the attempt has run, by the boot clock where the record has it.
    package func elapsedMs(_ started: Started) -> Int64 {
        if let boot = started.startedAtBootMs { return max(0, Self.bootClockMs() - boot) }
        return max(0, Int64(Date().timeIntervalSince1970 * 1000) - started.startedAtMs)
    }

    /// Marks the run as ended lost, for a monitor that has not started its agent yet (its runner died between the
    /// spawn and the record) or that its runner left: it then ends the agent instead of running it for a lease.
    package func abandon() {
        let path = "\(prefix).abandoned"
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd >= 0 { close(fd) }
        // Wakes a monitor waiting to be adopted: it sees the mark at once rather than at its next look.
        if let started = started(), isRunning(started) { kill(started.pid, SIGUSR1) }
    }

    /// Makes this process the run's holder (the monitor then no longer counts its runner as lost) and wakes it.
    package func claim() throws {
        let me = getpid()
        let line = "\(me) \(ProcessScanner.startTime(me) ?? 0)\n"
        let temporary = "\(ownerPath).\(me).tmp"
        try Data(line.utf8).write(to: URL(fileURLWithPath: temporary))
        chmod(temporary, 0o600)
        guard rename(temporary, ownerPath) == 0 else {
            unlink(temporary)
            throw AgentProcessError(code: .fileSetupFailed, message: "cannot write \(ownerPath): \(errnoText())", errno: errno)
        }
        if let started = started(), isRunning(started) { kill(started.pid, SIGUSR1) }
    }

    static func decode<T: Decodable>(_ path: String) -> T? {
        guard let data = FileManager.default.contents(atPath: path), data.count < 4096 else { return nil }
        return try? JSONDecoder().decode(T.self, from: data)
    }
}
