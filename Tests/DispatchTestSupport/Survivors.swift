import AgentProcess
import Foundation

/// Processes of a dispatch still alive, found the way the contract's acceptance says: `DISPATCH_REQUEST_ID=<id>` in `/proc/*/environ`.
package func survivors(of requestId: String) -> [Int32] {
    ProcessScanner.find(groupId: nil, marker: "DISPATCH_REQUEST_ID=\(requestId)")
}

/// Kills any survivors (test cleanup, so one failing test cannot leak into others).
package func killSurvivors(of requestId: String) {
    for pid in survivors(of: requestId) { kill(pid, SIGKILL) }
}

/// Processes whose command line is exactly `sleep <seconds>` (an escapee with an emptied environment carries no
/// marker; a unique fraction in `seconds` finds it).
package func sleepers(_ seconds: String) -> [pid_t] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> pid_t? in
        guard let pid = pid_t(entry), let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
        let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return argv == ["sleep", seconds] ? pid : nil
    }
}
