import Foundation

/// The uids sandboxed agents run as (`DISPATCH_AGENT_UIDS`, CONTRACT §7), leased one per run and never to two live
/// runs at once. A lease is a shared `flock` on `<directory>/<uid>`, held by the runner for the whole run and by each
/// of its attempts' monitors (which outlive a `serve`): the kernel lets it go when the last holder exits, however it
/// exits, so a crashed runner leaks nothing and an adopted run keeps its uid. A new lease takes the file exclusively
/// (free only when no one holds it) under `<directory>/.allocate`, then shares it.
package final class AgentUidLeases: Sendable {
    /// The uids handed out.
    package let range: ClosedRange<UInt32>
    /// Where the lock files live: one place per machine (`/run/agent-dispatch/agent-uids`), so runners with state
    /// dirs of their own never hand out the same uid.
    package let directory: String

    /// The default range: systemd's dynamic-user range.
    package static let defaultRange: ClosedRange<UInt32> = 61184...65519

    /// The machine-wide lock directory.
    package static let defaultDirectory = "/run/agent-dispatch/agent-uids"

    package init(range: ClosedRange<UInt32> = defaultRange, directory: String = defaultDirectory) {
        self.range = range
        self.directory = directory
    }

    /// Parses `DISPATCH_AGENT_UIDS`: `FIRST-LAST` (inclusive, both above 0 and at most 4294967294) or one uid.
    package static func parseRange(_ text: String) -> ClosedRange<UInt32>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard (1...2).contains(parts.count), let first = UInt32(parts[0]), let last = UInt32(parts[parts.count - 1]) else { return nil }
        guard first > 0, first <= last, last < UInt32.max else { return nil }
        return first...last
    }

    /// A uid no live run holds, no account owns and no process runs as, leased for `requestId` until the returned
    /// lease (and every process it was given to) is gone.
    package func lease(for requestId: String) throws(AgentProcessError) -> AgentUidLease {
        try prepareDirectory()
        let allocation = try lockFile("\(directory)/.allocate", LOCK_EX)
        defer { close(allocation) }
        let busy = Self.uidsOfProcesses()
        let count = UInt64(range.upperBound - range.lowerBound) + 1
        let start = UInt64.random(in: 0..<count)
        for step in 0..<count {
            let uid = range.lowerBound + UInt32((start + step) % count)
            guard !busy.contains(uid), getpwuid(uid) == nil else { continue }
            let path = "\(directory)/\(uid)"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { continue }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                continue
            }
            // Shared from here on: the monitors share it too. Every new lease is made under `.allocate`, so no one
            // takes it exclusively between the two calls.
            _ = ftruncate(fd, 0)
            _ = Data("\(requestId)\n".utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard flock(fd, LOCK_SH) == 0 else {
                close(fd)
                continue
            }
            return AgentUidLease(uid: uid, path: path, fd: fd)
        }
        throw AgentProcessError(
            code: .spawnFailed,
            message: "no agent uid is free in DISPATCH_AGENT_UIDS \(range.lowerBound)-\(range.upperBound): "
                + "every one is leased to a live run, used by a process or an account"
        )
    }

    /// Holds `uid` again for a run this runner adopts (its monitor still holds it; a runner that lost it keeps no
    /// other run from it for longer than its own run).
    /// `nil` when the uid's lease names another run (its monitor and runner both died and the uid went to another).
    package func adopt(_ uid: UInt32, for requestId: String) -> AgentUidLease? {
        guard range.contains(uid), (try? prepareDirectory()) != nil else { return nil }
        let path = "\(directory)/\(uid)"
        guard let fd = try? lockFile(path, LOCK_SH) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 512)
        let count = pread(fd, &bytes, bytes.count, 0)
        let holder = count > 0 ? String(decoding: bytes[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
        guard holder == requestId else {
            close(fd)
            return nil
        }
        return AgentUidLease(uid: uid, path: path, fd: fd)
    }

    /// Whether a live run (or a monitor of one) holds `uid`.
    package func isHeld(_ uid: UInt32) -> Bool {
        let fd = open("\(directory)/\(uid)", O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return true }
        _ = flock(fd, LOCK_UN)
        return false
    }

    private func prepareDirectory() throws(AgentProcessError) {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw AgentProcessError(code: .spawnFailed, message: "cannot create the agent uid leases' directory \(directory): \(error)")
            }
        }
    }

    private func lockFile(_ path: String, _ operation: Int32) throws(AgentProcessError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw AgentProcessError(code: .spawnFailed, message: "cannot open \(path): \(errnoText())", errno: errno)
        }
        while flock(fd, operation) != 0 {
            guard errno == EINTR else {
                let failure = AgentProcessError(code: .spawnFailed, message: "cannot lock \(path): \(errnoText())", errno: errno)
                close(fd)
                throw failure
            }
        }
        return fd
    }

    /// The real uids of every process on the machine (the owner of its `/proc` entry).
    static func uidsOfProcesses() -> Set<UInt32> {
        var uids = Set<UInt32>()
        for pid in ProcessScanner.allPids() {
            var info = stat()
            if stat("/proc/\(pid)", &info) == 0 { uids.insert(info.st_uid) }
        }
        return uids
    }
}

/// One run's hold on its uid: released when the run ends (``release()`` or deinit).
package final class AgentUidLease: @unchecked Sendable {
    /// The leased uid (and gid).
    package let uid: UInt32
    /// The lock file a monitor holds too (`dispatch-monitor --uid-lease`).
    package let path: String
    private let lock = NSLock()
    private var fd: Int32

    init(uid: UInt32, path: String, fd: Int32) {
        self.uid = uid
        self.path = path
        self.fd = fd
    }

    /// The agent user this lease runs as.
    package var user: AgentUser { AgentUser(uid: uid, gid: uid) }

    /// Lets the uid go (the run is over; a monitor still holding it keeps it until it exits).
    package func release() {
        lock.lock()
        defer { lock.unlock() }
        if fd >= 0 { close(fd) }
        fd = -1
    }

    deinit { if fd >= 0 { close(fd) } }
}
