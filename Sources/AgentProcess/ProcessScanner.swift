import Foundation

/// Finds live processes of one dispatch through `/proc`: members of its session/process group,
/// and any process whose environment carries its marker (descendants that escaped with `setsid`).
public enum ProcessScanner {
    /// Live (non-zombie) pids in session or process group `groupId`, or carrying `marker` in their environment.
    public static func find(groupId: pid_t?, marker: String?) -> [pid_t] {
        let me = getpid()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var found: [pid_t] = []
        let markerBytes = marker.map { Array($0.utf8) }
        for entry in entries {
            guard let pid = pid_t(entry), pid != me, let stat = readStat(pid), stat.state != "Z", stat.state != "X" else { continue }
            if let groupId, stat.pgrp == groupId || stat.session == groupId || pid == groupId {
                found.append(pid)
                continue
            }
            if let markerBytes, environ(pid, contains: markerBytes) { found.append(pid) }
        }
        return found
    }

    /// Whether `pid` is alive and not a zombie.
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = readStat(pid) else { return false }
        return stat.state != "Z" && stat.state != "X"
    }

    /// The kernel's start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`), to tell pid reuse apart.
    public static func startTime(_ pid: pid_t) -> UInt64? { readStat(pid)?.startTime }

    struct Stat {
        var state: Character
        var pgrp: pid_t
        var session: pid_t
        var startTime: UInt64
    }

    static func readStat(_ pid: pid_t) -> Stat? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
            let text = String(data: data, encoding: .utf8), let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after "(comm)": state ppid pgrp session ... starttime is field 22 overall (index 19 here).
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let pgrp = pid_t(fields[2]), let session = pid_t(fields[3]),
            let start = UInt64(fields[19])
        else { return nil }
        return Stat(state: state, pgrp: pgrp, session: session, startTime: start)
    }

    static func environ(_ pid: pid_t, contains marker: [UInt8]) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
        return data.split(separator: 0).contains { $0.elementsEqual(marker) }
    }
}
