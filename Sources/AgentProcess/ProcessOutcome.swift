import Foundation

/// How a supervised process ended and what it cost.
package struct ProcessOutcome: Sendable, Equatable {
    /// Why supervision ended.
    package enum Ending: String, Sendable, Equatable {
        /// The process exited (or was killed by a signal) on its own.
        case exited
        /// The time limit ran out and the group was terminated.
        case timedOut
        /// Supervision was cancelled and the group was terminated.
        case cancelled
        /// The output showed the final event and the process did not exit within the completion grace.
        case completedByOutput
        /// stdout or stderr grew past the log limit and the group was ended.
        case outputLimit
        /// Its runner died and nobody adopted the run within a lease: its monitor ended it.
        case runnerLost
        /// Supervision was let go of (``ProcessLimits/letGo``): the process was left running, for another runner.
        case letGo
    }

    /// The stream that passed the log limit (`stdout` or `stderr`), when ``ending`` is ``Ending/outputLimit``.
    package var exceededStream: String?

    package var ending: Ending
    /// The exit code, when the process exited normally.
    package var exitCode: Int32?
    /// The terminating signal, when a signal ended it.
    package var signal: Int32?
    /// Wall-clock start.
    package var startedAt: Date
    /// Spawn to reap, on the monotonic clock.
    package var duration: Duration
    /// The child's pid (also its process-group and session id).
    package var pid: Int32
    /// Processes killed after the main process ended (leftovers in its group or carrying its marker).
    package var leftoversKilled: Int
    /// The run's cgroups, when its leftovers are left to the caller (``ProcessSupervisor/endLeftovers(groupId:marker:grace:cgroup:)``).
    package var cgroup: RunCgroup?
    /// The kernel killed a process of the run for passing its memory limit.
    package var outOfMemory = false
    /// It ran in its own pid namespace and ended by itself: its leftovers are looked for in `/proc` only while that
    /// namespace lives (``ProcessSupervisor/endLeftovers(groupId:marker:grace:cgroup:isolatedExit:)``).
    package var endedByItselfIsolated = false

    package init(ending: Ending, exitCode: Int32?, signal: Int32?, startedAt: Date, duration: Duration, pid: Int32, leftoversKilled: Int) {
        self.ending = ending
        self.exitCode = exitCode
        self.signal = signal
        self.startedAt = startedAt
        self.duration = duration
        self.pid = pid
        self.leftoversKilled = leftoversKilled
    }

    /// Duration in milliseconds.
    package var durationMs: Int { Int(duration.milliseconds) }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
