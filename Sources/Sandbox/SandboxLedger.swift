import DispatchCore
import Foundation

/// Where a local sandbox backend records the sandboxes it makes, so the janitor knows every one of them —
/// also a checkout cut short. The backend sees this narrow interface, not the store behind it.
package protocol SandboxLedger: Sendable {
    /// Records a sandbox about to be written as `running`.
    func register(_ sandbox: LocalSandbox, requestId: String) async throws

    /// Moves the request's live sandboxes to its terminal `status`; returns their `cleanupAfter` stamp.
    func finish(requestId: String, status: DispatchStatus) async throws -> String?
}

extension SandboxRegistry: SandboxLedger {
    /// Records a sandbox about to be written as `running`, stamped now.
    package func register(_ sandbox: LocalSandbox, requestId: String) async throws {
        try await register(sandbox, requestId: requestId, now: Date())
    }

    /// Moves the request's live sandboxes to `status`, stamped now.
    package func finish(requestId: String, status: DispatchStatus) async throws -> String? {
        try await finish(requestId: requestId, status: status, now: Date())
    }
}
