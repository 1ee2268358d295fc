import Foundation
import Synchronization

/// What one run may use (`DISPATCH_MAX_MEMORY_BYTES`, `DISPATCH_MAX_PROCESSES`), and how the kernel is made to hold
/// it: one cgroup per supervised process tree where the runner can make one, else rlimits in the process itself.
package struct ResourceLimits: Sendable, Equatable {
    /// The memory the whole run may use (a cgroup), or each of its processes (the rlimit fallback).
    package var maxMemoryBytes: Int64?
    /// How many processes the run may have at once (cgroup only: `RLIMIT_NPROC` counts the uid's processes machine-wide).
    package var maxProcesses: Int?

    /// Limits of one run.
    package init(maxMemoryBytes: Int64? = nil, maxProcesses: Int? = nil) {
        self.maxMemoryBytes = maxMemoryBytes
        self.maxProcesses = maxProcesses
    }

    /// No limit at all.
    package var isEmpty: Bool { maxMemoryBytes == nil && maxProcesses == nil }
}

/// How limits are applied here, as `GET /` reports it (`limits`).
package enum LimitsMechanism: String, Sendable, Equatable {
    /// One cgroup per run in the v1 `memory` and `pids` hierarchies.
    case cgroupV1 = "cgroup-v1"
    /// `RLIMIT_DATA` per process (no process-count limit).
    case rlimit
    /// Nothing to apply.
    case none
}

/// Where this runner makes its per-run cgroups, found once at start-up.
package struct CgroupPlace: Sendable, Equatable {
    /// `<hierarchy>/<the runner's own cgroup>/agent-dispatch`, one per controller used (`pids`, `memory`).
    package let bases: [String]

    /// The v1 hierarchies' roots.
    static let v1Root = "/sys/fs/cgroup"

    /// The place under this process's own v1 `pids` and `memory` cgroups, when both exist and the runner can create
    /// cgroups there (a container's read-only cgroupfs, cgroup v2 or a missing controller: `nil`).
    package static func detect(ownCgroups: String = "/proc/self/cgroup", root: String = v1Root) -> CgroupPlace? {
        guard let text = try? String(contentsOfFile: ownCgroups, encoding: .utf8) else { return nil }
        var own: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            for controller in parts[1].split(separator: ",") { own[String(controller)] = String(parts[2]) }
        }
        var bases: [String] = []
        for controller in ["pids", "memory"] {
            guard let path = own[controller], FileManager.default.fileExists(atPath: "\(root)/\(controller)/cgroup.procs") else { return nil }
            let base = "\(root)/\(controller)\(path == "/" ? "" : path)/agent-dispatch"
            guard mkdir(base, 0o700) == 0 || errno == EEXIST, access(base, W_OK) == 0 else { return nil }
            bases.append(base)
        }
        return CgroupPlace(bases: bases)
    }

    /// The run cgroups this process made and has not removed: never taken for a dead run's (one just made is empty
    /// until its process joins it).
    static let live = Mutex(Set<String>())

    /// Makes the cgroups of one run with `limits` set, before anything joins them. `nil` when they cannot be made.
    func create(_ name: String, limits: ResourceLimits) -> RunCgroup? {
        Self.live.withLock { _ = $0.insert(name) }
        var made: [String] = []
        for base in bases {
            // The base itself may have been pruned (it is empty between runs): made again.
            if mkdir(base, 0o700) != 0 && errno != EEXIST {
                RunCgroup(directories: made).remove()
                Self.live.withLock { _ = $0.remove(name) }
                return nil
            }
            let directory = "\(base)/\(name)"
            guard mkdir(directory, 0o700) == 0 else {
                RunCgroup(directories: made).remove()
                Self.live.withLock { _ = $0.remove(name) }
                return nil
            }
            made.append(directory)
            let setting: (file: String, value: String)? =
                base.hasPrefix("\(Self.v1Root)/pids")
                ? limits.maxProcesses.map { ("pids.max", "\($0)") }
                : limits.maxMemoryBytes.map { ("memory.limit_in_bytes", "\($0)") }
            if let setting, !RunCgroup.write(setting.value, to: "\(directory)/\(setting.file)") {
                RunCgroup(directories: made).remove()
                Self.live.withLock { _ = $0.remove(name) }
                return nil
            }
        }
        return RunCgroup(directories: made)
    }

    /// The name of a new run cgroup: `run-<pid>.<start time>-<unique>`, so that other runners on the machine (another
    /// `serve`, a `dispatch run`) can tell whose it is.
    static func newName() -> String {
        let me = getpid()
        return "run-\(me).\(ProcessScanner.startTime(me) ?? 0)-\(UUID().uuidString.prefix(13))"
    }

    /// Removes the run cgroups nobody is in any more (a run's cgroup outlives it until then: its leftovers are
    /// ended after the result is written, and a monitor may hold it after a restart): this process's own that it is
    /// done with, and those of runners that are gone. Another live runner's are its own business — one it has just
    /// made is empty until its process joins it.
    func removeEmpty() {
        let me = getpid()
        for base in bases {
            // Listed first, then the live set read: a run cgroup is in `live` before its directory exists, so one made
            // meanwhile is seen as live (read the other way round, a run made between the two reads lost its empty
            // cgroup before its process joined: its spawn failed with ENODEV, 1 in ~3,000 serve dispatches).
            let names = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
            let live = Self.live.withLock { $0 }
            for name in names where name.hasPrefix("run-") && !live.contains(name) {
                if let owner = Self.owner(of: name), owner.pid != me, ProcessScanner.presence(owner.pid, startTime: owner.startTime) != .gone {
                    continue
                }
                rmdir("\(base)/\(name)")
            }
        }
    }

    /// The runner that made the cgroup `name`.
    static func owner(of name: String) -> (pid: pid_t, startTime: UInt64)? {
        let parts = name.dropFirst("run-".count).split(separator: "-", maxSplits: 1).first?.split(separator: ".")
        guard let parts, parts.count == 2, let pid = pid_t(parts[0]), let start = UInt64(parts[1]) else { return nil }
        return (pid, start)
    }
}

/// The cgroups of one run: every process of it joins them before it execs (the spawned child moves itself).
package struct RunCgroup: Sendable, Equatable {
    let directories: [String]

    /// The files a joining process writes "0" (itself) to: `tasks`, not `cgroup.procs` (see `join_cgroup` in spawn.c).
    var joinFiles: [String] { directories.map { "\($0)/tasks" } }

    /// The pids `directory`'s `cgroup.procs` lists, `nil` when it cannot be read.
    static func listed(in directory: String) -> [pid_t]? {
        (try? String(contentsOfFile: "\(directory)/cgroup.procs", encoding: .utf8)).map { $0.split(separator: "\n").compactMap { pid_t($0) } }
    }

    /// The run's live processes, whatever session, group or environment they escaped to.
    func members() -> [pid_t] {
        directories.first.flatMap(Self.listed(in:))?.filter(ProcessScanner.isAlive) ?? []
    }

    /// Whether every cgroup of the run is known to hold no process: each `cgroup.procs` read and empty (v1 lists no
    /// exited process; one that cannot be read counts as holding some).
    func holdsNoProcess() -> Bool {
        !directories.isEmpty && directories.allSatisfy { Self.listed(in: $0)?.isEmpty == true }
    }

    /// SIGKILLs every process still in the run's cgroup, until none is left (they may fork while we look): after
    /// each round it waits on the killed processes' pidfds (``ProcessRuntime/exits(of:within:)``), not a sleep.
    func killAll() async -> Int {
        var killed = Set<pid_t>()
        for _ in 0..<50 {
            let members = members()
            if members.isEmpty { break }
            for pid in members {
                kill(pid, SIGKILL)
                killed.insert(pid)
            }
            _ = await ProcessRuntime.shared.exits(of: Array(members), within: .milliseconds(50))
        }
        return killed.count
    }

    /// Whether the kernel killed a process of the run for passing its memory limit (`oom_kill` in v1's
    /// `memory.oom_control`).
    var hadOutOfMemoryKill: Bool {
        for directory in directories where directory.contains("/memory/") {
            guard let text = try? String(contentsOfFile: "\(directory)/memory.oom_control", encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
                if let count = Int(line.dropFirst("oom_kill ".count)), count > 0 { return true }
            }
        }
        return false
    }

    /// Removes the (empty) cgroups.
    func remove() {
        for directory in directories.reversed() { rmdir(directory) }
        if let name = directories.first.map({ ($0 as NSString).lastPathComponent }) { _ = CgroupPlace.live.withLock { $0.remove(name) } }
    }

    static func write(_ value: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { Glibc.write(fd, $0, strlen($0)) } == value.utf8.count
    }
}

/// How a supervisor limits what it starts: the limits, and where they are applied.
package struct ResourcePolicy: Sendable, Equatable {
    package var limits: ResourceLimits
    package var place: CgroupPlace?

    /// No limits.
    package static let unlimited = ResourcePolicy(limits: ResourceLimits(), place: nil)

    /// `limits` on this machine: cgroups where the runner can make them, else rlimits.
    package static func detect(_ limits: ResourceLimits) -> ResourcePolicy {
        ResourcePolicy(limits: limits, place: limits.isEmpty ? nil : CgroupPlace.detect())
    }

    /// What `GET /` reports.
    package var mechanism: LimitsMechanism {
        if limits.isEmpty { return .none }
        if place != nil { return .cgroupV1 }
        return limits.maxMemoryBytes == nil ? .none : .rlimit
    }
}
