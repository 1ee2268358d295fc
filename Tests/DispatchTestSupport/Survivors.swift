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
