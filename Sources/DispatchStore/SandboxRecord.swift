import DispatchCore
import Foundation
import GRDB

/// A registry row for one local sandbox.
package struct SandboxRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "sandbox"

    /// Lifecycle of a sandbox directory: `running` while its dispatch runs, then the dispatch's terminal
    /// status, then `removed` once the directory is gone.
    package enum State: String, Codable, Sendable, CaseIterable {
        case running, completed, failed, cancelled, removed
        /// A ready checkout of the warm pool (`DISPATCH_WARM_SANDBOXES`), not a request's yet.
        case warm
    }

    /// The replica whose disk holds the sandbox (`nil`: the only one). A shared store's janitor on another replica
    /// leaves it alone: it is not on that replica's disk.
    package var replica: String?

    package var sandboxId: String
    package var requestId: String
    package var state: State
    package var path: String
    package var repoPath: String
    package var workDir: String
    package var baseSha: String
    package var createdAt: String
    package var updatedAt: String
    package var cleanupAfter: String?

    package init(
        sandboxId: String,
        requestId: String,
        state: State,
        path: String,
        repoPath: String,
        workDir: String,
        baseSha: String,
        createdAt: String,
        updatedAt: String,
        cleanupAfter: String?,
        replica: String? = nil
    ) {
        self.replica = replica
        self.sandboxId = sandboxId
        self.requestId = requestId
        self.state = state
        self.path = path
        self.repoPath = repoPath
        self.workDir = workDir
        self.baseSha = baseSha
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.cleanupAfter = cleanupAfter
    }
}

extension SQLiteDispatchStore {
    /// Inserts or replaces a sandbox row.
    package func saveSandbox(_ record: SandboxRecord) async throws {
        try await pool.write { db in try record.save(db) }
    }

    /// One sandbox by id.
    package func sandbox(_ sandboxId: String) async throws -> SandboxRecord? {
        try await pool.read { db in try SandboxRecord.fetchOne(db, key: sandboxId) }
    }

    /// Sandboxes, newest first, optionally in one state or of one request.
    package func fetchSandboxes(state: SandboxRecord.State?, requestId: String?) async throws -> [SandboxRecord] {
        try await pool.read { db in
            var query = SandboxRecord.all()
            if let state { query = query.filter(Column("state") == state.rawValue) }
            if let requestId { query = query.filter(Column("requestId") == requestId) }
            return try query.order(Column("createdAt").desc, Column("sandboxId")).fetchAll(db)
        }
    }
}
