import DispatchCore
import DispatchStore
import Foundation

/// The local sandbox registry and its retention policy, over the store's `sandbox` table.
package struct SandboxRegistry: Sendable {
    /// How long terminal sandboxes are kept: completed and cancelled 24 h, failed 72 h.
    package static func retention(for state: SandboxRecord.State) -> TimeInterval {
        switch state {
        case .failed: 72 * 3600
        default: 24 * 3600
        }
    }

    package let store: any DispatchStore
    /// The replica whose disk this registry's sandboxes are on.
    package let replica: String

    package init(store: any DispatchStore, replica: String = ReplicaName.current) {
        self.store = store
        self.replica = replica
    }

    /// Records a new sandbox as `running`.
    package func register(_ sandbox: LocalSandbox, requestId: String, now: Date) async throws {
        let stamp = ISO8601.string(now)
        try await store.saveSandbox(
            SandboxRecord(
                sandboxId: sandbox.sandboxId,
                requestId: requestId,
                state: .running,
                path: sandbox.path,
                repoPath: sandbox.repoPath,
                workDir: sandbox.workDir,
                baseSha: sandbox.baseSha,
                createdAt: stamp,
                updatedAt: stamp,
                cleanupAfter: nil,
                replica: replica
            )
        )
    }

    /// Moves every live sandbox of `requestId` to the dispatch's terminal `status` and sets its retention.
    /// Returns the `cleanupAfter` stamp.
    @discardableResult
    package func finish(requestId: String, status: DispatchStatus, now: Date) async throws -> String? {
        let state = SandboxRecord.State(rawValue: status.rawValue) ?? .failed
        let cleanupAfter = ISO8601.string(now.addingTimeInterval(Self.retention(for: state)))
        for var record in try await store.sandboxes(requestId: requestId) where record.state == .running {
            record.state = state
            record.updatedAt = ISO8601.string(now)
            record.cleanupAfter = cleanupAfter
            try await store.saveSandbox(record)
        }
        return cleanupAfter
    }
}
