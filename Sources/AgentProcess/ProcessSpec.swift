import Foundation

/// Everything needed to start one supervised process.
package struct ProcessSpec: Sendable {
    /// Absolute path of the executable.
    package var executablePath: String
    /// The full argv, including argv[0].
    package var argv: [String]
    /// The complete environment of the child (nothing else is inherited).
    package var environment: [String: String]
    /// The child's working directory.
    package var workingDirectory: String
    /// File the child reads as stdin; `nil` means `/dev/null`. Never a pipe.
    package var stdinPath: String?
    /// File that receives stdout (truncated first).
    package var stdoutPath: String
    /// File that receives stderr (truncated first).
    package var stderrPath: String
    /// An exact `NAME=value` environment entry that marks the child and all its descendants, so escaped ones can be found.
    package var marker: String?
    /// Whether the child gets SIGKILL when the runner dies, however it dies (`dispatch run`, the job-runner).
    /// `serve` leaves it off: its runs are recovered after a restart (and, with isolation, held by a monitor).
    package var diesWithRunner: Bool
    /// When set, the process runs inside bubblewrap (`bwrap` at that path) with this view (CONTRACT §7).
    package var isolation: (bwrap: String, view: IsolationView)?

    /// When set, the process is held by a per-run monitor that outlives the runner (CONTRACT §7).
    package var monitor: MonitorSpec?

    /// What is actually executed: the program itself, or bwrap with its options and then the program, and in
    /// front of either the monitor — or, for a process that dies with its runner, the guard (bwrap arms its
    /// namespace's init only after setting the namespace up; the guard ends it if the runner dies meanwhile). The
    /// namespace's init stays in the monitor's or guard's process group, which is how the runner's and the monitor's
    /// group signals end everything in it. `deathSignal` is what the child gets when the runner dies (0: nothing).
    var launch: (executablePath: String, argv: [String], deathSignal: Int32) {
        var command = (executablePath: executablePath, argv: argv)
        if let isolation {
            let options = Bubblewrap.options(isolation.view, workingDirectory: workingDirectory, diesWithParent: diesWithRunner)
            let program =
                isolation.view.user.flatMap { user in
                    AgentUser.setpriv.flatMap { setpriv in
                        AgentUser.env.map { user.switchArguments(setpriv: setpriv, env: $0, directory: workingDirectory) }
                    }
                } ?? []
            let bridge = isolation.view.network?.arguments ?? []
            command = (isolation.bwrap, ["bwrap"] + options + ["--"] + bridge + program + [executablePath] + argv.dropFirst())
        }
        if let monitor {
            return (monitor.program, monitor.argv(runner: getpid()) + [command.executablePath] + command.argv.dropFirst(), 0)
        }
        guard diesWithRunner else { return (command.executablePath, command.argv, 0) }
        guard isolation != nil, let guardProgram = Self.guardProgram else { return (command.executablePath, command.argv, SIGKILL) }
        let guardArgv = ["dispatch-monitor", "--guard", "--runner-pid", "\(getpid())", "--", command.executablePath]
        return (guardProgram, guardArgv + command.argv.dropFirst(), SIGUSR2)
    }

    /// What the process is started with: ``environment``, and under a network of its own the proxy's variables
    /// (CONTRACT §10) over whatever the environment said of them.
    var launchEnvironment: [String: String] {
        guard let network = isolation?.view.network else { return environment }
        return environment.merging(network.environment) { $1 }
    }

    /// The `dispatch-monitor` that guards isolated processes which die with their runner, found once.
    static let guardProgram = MonitorSpec.locateProgram(environment: ProcessInfo.processInfo.environment)

    package init(
        executablePath: String,
        argv: [String],
        environment: [String: String],
        workingDirectory: String,
        stdinPath: String? = nil,
        stdoutPath: String,
        stderrPath: String,
        marker: String? = nil,
        diesWithRunner: Bool = false
    ) {
        self.diesWithRunner = diesWithRunner
        self.executablePath = executablePath
        self.argv = argv
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdinPath = stdinPath
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        self.marker = marker
    }
}

/// How long a supervised process may run and how it is ended.
package struct ProcessLimits: Sendable {
    /// Time until the process is ended as timed out.
    package var timeout: Duration
    /// SIGTERM → SIGKILL grace.
    package var killGrace: Duration
    /// After the output shows the final event, how long the process may take to exit by itself.
    package var completionGrace: Duration
    /// How often, at most, the output is looked at for the final event (only after stdout grew).
    package var completionPollInterval: Duration
    /// Largest stdout or stderr file; past it the group is ended (`nil`: unbounded), checked on every write the
    /// runtime hears of.
    package var maxLogBytes: Int64?
    /// Set to stop supervising without ending anything (a `serve` handing its runs off to the next): the supervision
    /// returns ``ProcessOutcome/Ending/letGo`` at once, the process and its leftovers left as they are.
    package var letGo: Latch?
    /// Set to end the process as cancelled (a run's cancel, its disk limit) besides the calling task's cancellation.
    package var stop: Latch?

    package init(
        timeout: Duration,
        killGrace: Duration = .seconds(5),
        completionGrace: Duration = .seconds(2),
        completionPollInterval: Duration = .milliseconds(100),
        maxLogBytes: Int64? = nil
    ) {
        self.timeout = timeout
        self.killGrace = killGrace
        self.completionGrace = completionGrace
        self.completionPollInterval = completionPollInterval
        self.maxLogBytes = maxLogBytes
    }
}
