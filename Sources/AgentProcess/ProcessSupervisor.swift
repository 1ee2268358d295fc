import CProcessSpawn
import Foundation
import Synchronization

/// Runs one process in its own session with output to files, bounded by a time limit, and makes sure
/// nothing of it survives: on timeout or cancel the whole group gets SIGTERM then SIGKILL after the grace,
/// and once the main process has exited, leftovers in its group or carrying its marker are ended too.
package struct ProcessSupervisor: Sendable {
    /// How long leftovers of an exited process get between SIGTERM and SIGKILL.
    package var leftoverGrace: Duration
    /// What every process it starts may use, and how that is enforced (a cgroup per process tree, or rlimits).
    package var resources: ResourcePolicy

    package init(leftoverGrace: Duration = .milliseconds(200), resources: ResourcePolicy = .unlimited) {
        self.leftoverGrace = leftoverGrace
        self.resources = resources
    }

    /// Starts `spec` and supervises it to the end (its leftovers too, unless `sweepLeftovers` is false). `finalEventSeen` is polled when given (completion detection).
    ///
    /// Cancelling the calling task terminates the process group and returns an outcome with ending `.cancelled`.
    @inline(never)
    package func run(
        _ spec: ProcessSpec,
        limits: ProcessLimits,
        finalEventSeen: (@Sendable () -> Bool)? = nil,
        sweepLeftovers: Bool = true
    ) async throws(AgentProcessError) -> ProcessOutcome {
        let startedAt = Date()
        let start = ContinuousClock.now
        resources.place?.removeEmpty()
        var cgroup = resources.place?.create(CgroupPlace.newName(), limits: resources.limits)
        let pid: pid_t
        do {
            pid = try spawn(spec, cgroup: cgroup)
        } catch let error where cgroup != nil && error.errno == ENOENT {
            // The run's cgroup vanished before the child joined it (a machine's own agent pruning empty cgroups): run it
            // under the rlimit fallback rather than not at all. A missing program fails again, and says so.
            cgroup?.remove()
            cgroup = nil
            pid = try spawn(spec, cgroup: nil)
        } catch {
            cgroup?.remove()
            throw error
        }
        var watched = Watched(spec)
        watched.cgroup = cgroup
        let timing = Timing(startedAt: startedAt, start: start, deadline: start + limits.timeout)
        return await follow(ChildExit(pid: pid), watched, timing, limits: limits, finalEventSeen: finalEventSeen, sweepLeftovers: sweepLeftovers)
    }

    /// When a supervised process started (wall clock and monotonic) and when it is ended as timed out.
    struct Timing {
        var startedAt: Date
        var start: ContinuousClock.Instant
        var deadline: ContinuousClock.Instant
    }

    /// What is watched of a process beside its exit: its output files, its marker, how it was started.
    package struct Watched: Sendable {
        package var stdoutPath: String
        package var stderrPath: String
        package var marker: String?
        /// Run inside bubblewrap, which reports a command killed by signal N as exit 128+N.
        package var isolated: Bool
        /// The monitor's record, when a monitor holds the process.
        package var record: MonitorRecord?
        /// The cgroups the process tree was started in (ended and removed with its leftovers).
        package var cgroup: RunCgroup?

        /// What is watched of a process started elsewhere.
        package init(stdoutPath: String, stderrPath: String, marker: String?, isolated: Bool, record: MonitorRecord?) {
            self.stdoutPath = stdoutPath
            self.stderrPath = stderrPath
            self.marker = marker
            self.isolated = isolated
            self.record = record
        }

        /// What `spec` starts.
        package init(_ spec: ProcessSpec) {
            stdoutPath = spec.stdoutPath
            stderrPath = spec.stderrPath
            marker = spec.marker
            isolated = spec.isolation != nil
            record = spec.monitor.map { MonitorRecord(prefix: $0.recordPrefix) }
        }
    }

    /// Takes over an attempt a previous runner started under a monitor (CONTRACT §7), and supervises it from here
    /// as ``run(_:limits:finalEventSeen:sweepLeftovers:)`` would: cancellation, the output limit, completion by
    /// output and `limits.timeout` (what is left of the attempt's share). An attempt that ended while no runner was up
    /// comes back as the monitor recorded it. `nil`: there is no monitor to adopt (never started, or gone without a
    /// record).
    @inline(never)
    package func adopt(
        _ watched: Watched,
        limits: ProcessLimits,
        finalEventSeen: (@Sendable () -> Bool)? = nil,
        sweepLeftovers: Bool = true
    ) async -> ProcessOutcome? {
        guard let record = watched.record else { return nil }
        switch record.state() {
        case .none, .gone:
            return nil
        case .ended(_, let ended):
            let duration = Duration.milliseconds(max(0, ended.endedAtMs - ended.startedAtMs))
            let leftovers =
                sweepLeftovers ? await uncancelled { await self.endLeftovers(groupId: nil, marker: watched.marker, grace: self.leftoverGrace) } : 0
            var outcome = Self.outcome(
                ending: Self.ending(recorded: ended, supervised: .exited),
                status: ended.waitStatus,
                isolated: watched.isolated,
                startedAt: Date(timeIntervalSince1970: Double(ended.startedAtMs) / 1000),
                duration: duration,
                // No group to sweep: the monitor is long gone, and its pid may name another process by now.
                pid: 0
            )
            outcome.leftoversKilled = leftovers
            return outcome
        case .alive(let started):
            try? record.claim()
            let startedAt = Date(timeIntervalSince1970: Double(started.startedAtMs) / 1000)
            let start = ContinuousClock.now - .milliseconds(record.elapsedMs(started))
            let child = ChildExit(foreign: started.pid, startTime: started.startTime) { record.ended()?.waitStatus ?? SIGKILL }
            let timing = Timing(startedAt: startedAt, start: start, deadline: .now + limits.timeout)
            return await follow(child, watched, timing, limits: limits, finalEventSeen: finalEventSeen, sweepLeftovers: sweepLeftovers)
        }
    }

    /// Supervises a started (or adopted) process to its end or `timing.deadline`, then ends its leftovers.
    @inline(never)
    private func follow(
        _ child: ChildExit,
        _ watched: Watched,
        _ timing: Timing,
        limits: ProcessLimits,
        finalEventSeen: (@Sendable () -> Bool)?,
        sweepLeftovers: Bool
    ) async -> ProcessOutcome {
        let clock = ContinuousClock()
        let deadline = timing.deadline
        let outputs = OutputFiles(stdout: watched.stdoutPath, stderr: watched.stderrPath, limit: limits.maxLogBytes)
        let (ending, status) = await withTaskCancellationHandler {
            await supervise(child: child, deadline: deadline, limits: limits, outputs: outputs, finalEventSeen: finalEventSeen, clock: clock)
        } onCancel: {
            child.interrupt()
        }
        let duration = clock.now - timing.start
        let pid = child.pid
        // Detached: a cancelled task's sleeps return at once, which would skip the SIGTERM grace.
        let grace = min(leftoverGrace, limits.killGrace)
        // Without `sweepLeftovers` the caller ends them (``endLeftovers(groupId:marker:grace:cgroup:isolatedExit:)``) once its result
        // is out.
        let cgroup = watched.cgroup
        let outOfMemory = cgroup?.hadOutOfMemoryKill ?? false
        let isolatedExit = watched.isolated && ending == .exited
        let leftovers =
            sweepLeftovers && ending != .letGo
            ? await uncancelled {
                await self.endLeftovers(groupId: pid, marker: watched.marker, grace: grace, cgroup: cgroup, isolatedExit: isolatedExit)
            } : 0
        let recorded = ending == .exited ? watched.record?.ended() : nil
        var outcome = Self.outcome(
            ending: recorded.map { Self.ending(recorded: $0, supervised: ending) } ?? ending,
            status: status,
            isolated: watched.isolated,
            startedAt: timing.startedAt,
            duration: duration,
            pid: pid
        )
        outcome.leftoversKilled = leftovers
        outcome.endedByItselfIsolated = isolatedExit
        outcome.cgroup = cgroup
        outcome.outOfMemory = outOfMemory
        if ending == .outputLimit { outcome.exceededStream = outputs.exceeded() }
        return outcome
    }

    /// The outcome of a process that ended with wait status `status` (`nil`: never reaped).
    static func outcome(
        ending: ProcessOutcome.Ending,
        status: Int32?,
        isolated: Bool,
        startedAt: Date,
        duration: Duration,
        pid: pid_t
    ) -> ProcessOutcome {
        var exitCode = status.flatMap(WaitStatus.exitCode)
        var signal = status.flatMap(WaitStatus.signal)
        // bwrap reports a command killed by signal N as exit 128+N, as a shell does.
        if isolated, let code = exitCode, (129...(128 + 64)).contains(code) { (exitCode, signal) = (nil, code - 128) }
        return ProcessOutcome(
            ending: ending,
            exitCode: exitCode,
            signal: signal,
            startedAt: startedAt,
            duration: duration,
            pid: pid,
            leftoversKilled: 0
        )
    }

    /// How a monitored process ended: as the monitor recorded it when the monitor ended it itself (its deadline, a
    /// run nobody adopted), else as supervised.
    static func ending(recorded: MonitorRecord.Ended, supervised: ProcessOutcome.Ending) -> ProcessOutcome.Ending {
        switch recorded.ending {
        case "timedOut": .timedOut
        case "runnerLost": .runnerLost
        default: supervised
        }
    }

    /// Waits for the first of: the exit, the deadline, cancellation, being let go of, an output file past the limit, and — when
    /// `finalEventSeen` is given — the final event followed by `limits.completionGrace`. Every wait is an event on the
    /// ``ProcessRuntime`` (the exit's pidfd, the files' inotify watches, timers): an idle agent costs nothing. The
    /// final event is looked for only after stdout grew, at most every `limits.completionPollInterval`.
    @inline(never)
    private func supervise(
        child: ChildExit,
        deadline: ContinuousClock.Instant,
        limits: ProcessLimits,
        outputs: OutputFiles,
        finalEventSeen: (@Sendable () -> Bool)?,
        clock: ContinuousClock
    ) async -> (ProcessOutcome.Ending, Int32?) {
        let runtime = ProcessRuntime.shared
        let watch = OutputWatch(outputs: outputs, group: child.pid, wakeup: Wakeup())
        let wakeup = watch.wakeup
        child.whenExited { wakeup.signal() }
        var timers = [runtime.timer(at: deadline) { wakeup.signal() }]
        var files: [ProcessRuntime.Token] = []
        if outputs.limit != nil || finalEventSeen != nil {
            files.append(runtime.watchFile(outputs.stdout) { watch.changed(stdout: true) })
        }
        if outputs.limit != nil { files.append(runtime.watchFile(outputs.stderr) { watch.changed(stdout: false) }) }
        let latches = [limits.letGo, limits.stop].compactMap { $0 }.map { latch in (latch, latch.observe { wakeup.signal() }) }
        defer {
            for token in timers + files { runtime.cancel(token) }
            for (latch, key) in latches { latch.ignore(key) }
        }
        var finalEventAt: ContinuousClock.Instant?
        var lastProbe = clock.now
        var probeScheduled = false
        while true {
            // Before cancellation: a run let go of is never ended by the cancellation that may follow.
            if limits.letGo?.isSet == true { return (.letGo, nil) }
            if Task.isCancelled || limits.stop?.isSet == true {
                return (.cancelled, await terminate(child, grace: limits.killGrace))
            }
            if clock.now >= deadline {
                return (.timedOut, await terminate(child, grace: limits.killGrace))
            }
            if let status = child.status {
                return (watch.tripped ? .outputLimit : .exited, status)
            }
            if watch.tripped || outputs.exceeded() != nil {
                // Stop the writer first (SIGKILL: a flood must not grow the file through a SIGTERM grace).
                signalGroup(child.pid, SIGKILL)
                return (.outputLimit, await child.wait(timeout: .seconds(10)))
            }
            if let finalEventSeen {
                if let seenAt = finalEventAt {
                    if clock.now - seenAt >= limits.completionGrace {
                        return (.completedByOutput, await terminate(child, grace: limits.killGrace))
                    }
                } else if watch.grew, clock.now - lastProbe >= limits.completionPollInterval {
                    watch.grew = false
                    probeScheduled = false
                    lastProbe = clock.now
                    if finalEventSeen() {
                        finalEventAt = clock.now
                        timers.append(runtime.timer(at: clock.now + limits.completionGrace) { wakeup.signal() })
                    }
                } else if watch.grew, !probeScheduled {
                    probeScheduled = true
                    timers.append(runtime.timer(at: lastProbe + limits.completionPollInterval) { wakeup.signal() })
                }
            }
            await wakeup.wait()
        }
    }

    /// What the output files' watches saw: growth of stdout (worth a look for the final event) and a stream past the
    /// limit, which the watch itself answers with SIGKILL to the group on the runtime's thread — a flood at GB/s
    /// then overshoots by what one wake of the loop lets through, not by what a busy scheduler does.
    final class OutputWatch: Sendable {
        private let state = Atomic<Int>(0)  // 0 watching, 1 tripped
        private let grown = Atomic<Bool>(true)  // looked at once at the start: it may have been written before the watch
        let outputs: OutputFiles
        let group: pid_t
        let wakeup: Wakeup

        init(outputs: OutputFiles, group: pid_t, wakeup: Wakeup) {
            self.outputs = outputs
            self.group = group
            self.wakeup = wakeup
        }

        var tripped: Bool { state.load(ordering: .acquiring) == 1 }

        var grew: Bool {
            get { grown.load(ordering: .acquiring) }
            set { grown.store(newValue, ordering: .releasing) }
        }

        /// A change to stdout (`stdout`) or stderr.
        func changed(stdout: Bool) {
            if outputs.exceeded() != nil, state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged {
                _ = kill(-group, SIGKILL)
            }
            if stdout { grew = true }
            wakeup.signal()
        }
    }

    /// The two output files and the size neither may pass.
    struct OutputFiles: Sendable {
        let stdout: String
        let stderr: String
        let limit: Int64?

        /// The first stream past the limit, if any (a `stat` each: cheap enough to poll).
        func exceeded() -> String? {
            guard let limit else { return nil }
            if Self.size(stdout) > limit { return "stdout" }
            if Self.size(stderr) > limit { return "stderr" }
            return nil
        }

        static func size(_ path: String) -> Int64 {
            var info = stat()
            return stat(path, &info) == 0 ? Int64(info.st_size) : 0
        }
    }

    /// SIGTERM to the group (and marked escapees), SIGKILL after `grace`, then wait for the reap.
    @inline(never)
    private func terminate(_ child: ChildExit, grace: Duration) async -> Int32? {
        signalGroup(child.pid, SIGTERM)
        if let status = await child.wait(timeout: grace) { return status }
        signalGroup(child.pid, SIGKILL)
        return await child.wait(timeout: .seconds(10))
    }

    /// Ends whatever is left of process group `groupId` or carries `marker`, and last whatever is still in the
    /// run's `cgroup` (which then is removed); returns how many processes it found.
    @inline(never)
    package func endLeftovers(
        groupId: pid_t?,
        marker: String?,
        grace: Duration,
        cgroup: RunCgroup? = nil,
        isolatedExit: Bool = false
    ) async -> Int {
        // Outside the caller's cancellation: a cancelled run's sweep must still wait for what it kills (each wait on
        // pidfds returns at once in a cancelled task), or its cgroup stays and its home is written back too early.
        await uncancelled {
            await self.sweep(groupId: groupId, marker: marker, grace: grace, cgroup: cgroup, isolatedExit: isolatedExit)
        }
    }

    private func sweep(groupId: pid_t?, marker: String?, grace: Duration, cgroup: RunCgroup?, isolatedExit: Bool) async -> Int {
        // A pid of 0 or below would name this runner's own group (kill(0, …), kill(-1, …)): never a group to sweep.
        let groupId = groupId.flatMap { $0 > 0 ? $0 : nil }
        let gone = isolatedExit ? await Self.namespaceGone(cgroup: cgroup) : false
        let found = gone ? 0 : await endMarked(groupId: groupId, marker: marker, grace: grace)
        guard let cgroup else { return found }
        let escaped = await cgroup.killAll()
        cgroup.remove()
        return found + escaped
    }

    /// Whether nothing of an attempt that ended by itself in its own pid namespace is left, so the /proc scan by
    /// group and marker (14 % of `serve`'s CPU at concurrency 8) has nothing to find: its run cgroup holds no process.
    /// Every process of the namespace is in that cgroup — the agent cannot leave it: the cgroup hierarchies are
    /// read-only in its namespace and it has no capability to mount them (tested) — and the kernel ends the namespace's
    /// processes once its init ends, which follows the agent within milliseconds: it is given 20 ms. (The process
    /// group cannot tell: the namespace's init stays behind as a zombie wherever PID 1 does not reap.) An orphan the
    /// namespace still holds (one keeping stderr open) keeps the cgroup, and is swept. No cgroup: always scanned.
    static func namespaceGone(cgroup: RunCgroup?) async -> Bool {
        guard let cgroup else { return false }
        for _ in 0..<20 {
            if cgroup.holdsNoProcess() { return true }
            await ProcessRuntime.shared.sleep(for: .milliseconds(1))
        }
        return false
    }

    /// SIGTERM to the group and to whatever carries the marker, SIGKILL to what is left after `grace`, until a scan
    /// finds nobody. Every wait is on the processes' pidfds (the ``ProcessRuntime``): no polling sleep.
    @inline(never)
    private func endMarked(groupId: pid_t?, marker: String?, grace: Duration) async -> Int {
        let runtime = ProcessRuntime.shared
        var survivors = ProcessScanner.find(groupId: groupId, marker: marker)
        guard !survivors.isEmpty else { return 0 }
        let count = survivors.count
        if let groupId { signalGroup(groupId, SIGTERM) }
        for pid in survivors { kill(pid, SIGTERM) }
        _ = await runtime.exits(of: survivors, within: grace)
        // Looked for again before any SIGKILL: a pid that ended during the grace may name another process by now.
        survivors = ProcessScanner.find(groupId: groupId, marker: marker)
        if survivors.isEmpty { return count }
        // Escapees may fork while we look: repeat until a scan comes back empty.
        for _ in 0..<100 {
            if let groupId { signalGroup(groupId, SIGKILL) }
            for pid in survivors { kill(pid, SIGKILL) }
            _ = await runtime.exits(of: survivors, within: .milliseconds(200))
            survivors = ProcessScanner.find(groupId: groupId, marker: marker)
            if survivors.isEmpty { break }
        }
        return count
    }

    private func signalGroup(_ groupId: pid_t, _ signal: Int32) {
        _ = kill(-groupId, signal)
    }

    private func spawn(_ spec: ProcessSpec, cgroup: RunCgroup?) throws(AgentProcessError) -> pid_t {
        let stdinFd = open(spec.stdinPath ?? "/dev/null", O_RDONLY | O_CLOEXEC)
        guard stdinFd >= 0 else {
            throw AgentProcessError(
                code: .fileSetupFailed,
                message: "cannot open stdin file \(spec.stdinPath ?? "/dev/null"): \(errnoText())",
                errno: errno
            )
        }
        defer { close(stdinFd) }
        let stdoutFd = try openOutput(spec.stdoutPath)
        defer { close(stdoutFd) }
        let stderrFd = try openOutput(spec.stderrPath)
        defer { close(stderrFd) }

        let launch = spec.launch
        let argv = CStringArray(launch.argv)
        let envp = CStringArray(spec.launchEnvironment.map { "\($0.key)=\($0.value)" })
        let cgroupFiles = CStringArray(cgroup?.joinFiles ?? [])
        defer { withExtendedLifetime(cgroupFiles) {} }
        let procs = cgroupFiles.pointers.dropLast()
        // Without a cgroup, memory is limited per process (RLIMIT_DATA): the fallback CONTRACT §7 allows.
        let rlimitData = cgroup == nil ? resources.limits.maxMemoryBytes ?? 0 : 0
        var pid: pid_t = 0
        let rc = argv.withPointer { argvPointer in
            envp.withPointer { envpPointer in
                cps_spawn(
                    &pid,
                    launch.executablePath,
                    argvPointer,
                    envpPointer,
                    spec.workingDirectory,
                    stdinFd,
                    stdoutFd,
                    stderrFd,
                    ProcessUmask.forChildren,
                    launch.deathSignal,
                    procs.first ?? nil,
                    procs.dropFirst().first ?? nil,
                    rlimitData
                )
            }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(rc))
            throw AgentProcessError(
                code: .spawnFailed,
                message: "cannot start \(spec.executablePath) in \(spec.workingDirectory): \(reason)",
                errno: rc
            )
        }
        return pid
    }

    private func openOutput(_ path: String) throws(AgentProcessError) -> Int32 {
        let directory = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AgentProcessError(code: .fileSetupFailed, message: "cannot create log file \(path): \(errnoText())", errno: errno)
        }
        return fd
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// A NULL-terminated `char *[]` that frees its strings.
final class CStringArray {
    private(set) var pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) {
        pointers = strings.map { strdup($0) } + [nil]
    }

    deinit {
        for pointer in pointers { free(pointer) }
    }

    func withPointer<R>(_ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
