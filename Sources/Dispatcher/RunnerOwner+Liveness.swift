import AgentProcess
import DispatchCore
import DispatchStore
import Foundation

extension RunnerOwner {
    /// This process as an owner of `kind` (`run`, `serve`, `job`).
    package static func current(kind: Kind) -> RunnerOwner {
        let pid = getpid()
        let replica = kind == .serve ? ReplicaName.current : nil
        return RunnerOwner(
            kind: kind,
            pid: pid,
            startTime: ProcessScanner.startTime(pid),
            bootId: Self.currentBootId,
            host: Self.hostName,
            replica: replica
        )
    }

    /// Whether the owner runs on this machine (same host, same boot): only then are its files and processes here.
    package var isOnThisMachine: Bool {
        guard host == Self.hostName else { return false }
        if let bootId, let current = Self.currentBootId { return bootId == current }
        return true
    }

    /// Whether the owning process is known to be gone. Owners on other hosts are never presumed dead, nor is one whose
    /// `/proc` entry could not be read.
    package var isKnownDead: Bool {
        guard host == Self.hostName else { return false }
        if let bootId, let current = Self.currentBootId, bootId != current { return true }
        // Only a positive answer: a failed read of /proc (EMFILE while an agent holds every descriptor) is not death.
        return ProcessScanner.presence(pid, startTime: startTime) == .gone
    }

    /// Whether this owner is the calling process.
    package var isCurrentProcess: Bool {
        host == Self.hostName && pid == getpid() && startTime == ProcessScanner.startTime(getpid())
    }

    static let currentBootId: String? = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines)

    static let hostName: String = ProcessInfo.processInfo.hostName
}

extension DispatchRecord {
    /// Whether nobody vouches for this non-terminal row any more: its owner let its lease expire (on any host), or —
    /// the fast path — the owner is a process on this machine that is gone.
    package func ownerIsGone(now: Date = Date()) -> Bool {
        guard let owner else { return false }
        if owner.isCurrentProcess { return false }
        if owner.isKnownDead { return true }
        if let lease = leaseExpiresAt, now > lease { return true }
        return false
    }
}
