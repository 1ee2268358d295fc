import Foundation

/// Finds live processes of one dispatch through `/proc`: members of its session/process group,
/// and any process whose environment carries its marker (descendants that escaped with `setsid`).
package enum ProcessScanner {
    /// Live (non-zombie) pids in session or process group `groupId`, or carrying `marker` in their environment.
    package static func find(groupId: pid_t?, marker: String?) -> [pid_t] {
        let me = getpid()
        var found: [pid_t] = []
        let markerBytes = marker.map { Array($0.utf8) }
        let groupId = groupId.flatMap { $0 > 0 ? $0 : nil }
        for pid in allPids() {
            guard pid != me, let stat = readStat(pid), stat.state != "Z", stat.state != "X" else { continue }
            if let groupId, stat.pgrp == groupId || stat.session == groupId || pid == groupId {
                found.append(pid)
                continue
            }
            if let markerBytes, environ(pid, contains: markerBytes) { found.append(pid) }
        }
        return found
    }

    /// Whether `pid` is alive and not a zombie.
    package static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = readStat(pid) else { return false }
        return stat.state != "Z" && stat.state != "X"
    }

    /// The kernel's start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`), to tell pid reuse apart.
    package static func startTime(_ pid: pid_t) -> UInt64? { readStat(pid)?.startTime }

    /// What `/proc` says of a process.
    package enum Presence: Sendable, Equatable {
        /// It runs (and, when a start time was given, is the process that started then).
        case running
        /// Positively gone: no such process, a zombie, or another process under a reused pid.
        case gone
        /// The read failed for another reason (out of file descriptors, EMFILE): never taken as proof of death.
        case unknown
    }

    /// Whether `pid` — the process that started at `startTime`, when given — runs, is gone, or cannot be told.
    package static func presence(_ pid: pid_t, startTime: UInt64? = nil) -> Presence {
        var failure: Int32 = 0
        guard let stat = readStat(pid, failure: &failure) else { return failure == ENOENT || failure == ESRCH ? .gone : .unknown }
        if stat.state == "Z" || stat.state == "X" { return .gone }
        if let startTime, stat.startTime != startTime { return .gone }
        return .running
    }

    struct Stat {
        var state: Character
        var pgrp: pid_t
        var session: pid_t
        var startTime: UInt64
    }

    /// Numeric entries of `/proc` (this runs after every agent exit, so it avoids Foundation).
    package static func allPids() -> [pid_t] {
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [pid_t] = []
        while let entry = readdir(directory) {
            // Read in place: a record is only as long as its name (`d_reclen`), and copying the declared 256-byte
            // `d_name` read past the end of the buffer — off its last page, a crash (seen holding 200 runs).
            let name = UnsafeRawPointer(entry).advanced(by: nameOffset).assumingMemoryBound(to: UInt8.self)
            var value: pid_t = 0
            var length = 0
            while name[length] != 0, length < 10 {
                guard name[length] >= 48 && name[length] <= 57 else { break }
                value = value * 10 + pid_t(name[length] - 48)
                length += 1
            }
            if length > 0, name[length] == 0, value > 0 { pids.append(value) }
        }
        return pids
    }

    /// The whole content of a small `/proc` file.
    static func readSmallFile(_ path: String) -> [UInt8]? {
        var failure: Int32 = 0
        return readSmallFile(path, failure: &failure)
    }

    /// The whole content of a small `/proc` file; `nil` with the errno in `failure` when it cannot be opened or read.
    static func readSmallFile(_ path: String, failure: inout Int32) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            failure = errno
            return nil
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 {
                failure = errno
                return nil
            }
            guard count > 0 else { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return bytes
    }

    static func readStat(_ pid: pid_t) -> Stat? {
        var failure: Int32 = 0
        return readStat(pid, failure: &failure)
    }

    /// The parsed `/proc/PID/stat`; `nil` with the errno in `failure` when it cannot be read (ESRCH for a process
    /// that ended while it was read).
    static func readStat(_ pid: pid_t, failure: inout Int32) -> Stat? {
        guard let bytes = readSmallFile("/proc/\(pid)/stat", failure: &failure) else { return nil }
        guard let text = String(bytes: bytes, encoding: .utf8), let close = text.lastIndex(of: ")") else {
            failure = bytes.isEmpty ? ESRCH : EINVAL
            return nil
        }
        // Fields after "(comm)": state ppid pgrp session ... starttime is field 22 overall (index 19 here).
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let pgrp = pid_t(fields[2]), let session = pid_t(fields[3]),
            let start = UInt64(fields[19])
        else { return nil }
        return Stat(state: state, pgrp: pgrp, session: session, startTime: start)
    }

    static func environ(_ pid: pid_t, contains marker: [UInt8]) -> Bool {
        guard let data = readSmallFile("/proc/\(pid)/environ") else { return false }
        return data.split(separator: 0).contains { $0.elementsEqual(marker) }
    }
}
