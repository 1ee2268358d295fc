import DispatchStore
import PostgresNIO

extension PostgresDispatchStore {
    /// One `sandbox` row as read.
    typealias SandboxRow = (String, String, String, String, String, String, String, String, String, String?, String?)

    static let sandboxColumns = "sandbox_id, request_id, state, path, repo_path, work_dir, base_sha, created_at, updated_at, cleanup_after, replica"

    static func sandbox(_ row: SandboxRow) throws -> SandboxRecord {
        guard let state = SandboxRecord.State(rawValue: row.2) else {
            throw DispatchStoreError(code: .corruptRecord, message: "sandbox \(row.0) has an unknown state \(row.2)")
        }
        return SandboxRecord(
            sandboxId: row.0,
            requestId: row.1,
            state: state,
            path: row.3,
            repoPath: row.4,
            workDir: row.5,
            baseSha: row.6,
            createdAt: row.7,
            updatedAt: row.8,
            cleanupAfter: row.9,
            replica: row.10
        )
    }

    func sandboxes(_ query: PostgresQuery) async throws -> [SandboxRecord] {
        var records: [SandboxRecord] = []
        for try await row in try await client.query(query, logger: logger).decode(SandboxRow.self) { records.append(try Self.sandbox(row)) }
        return records
    }

    /// Inserts or replaces a sandbox's registry row.
    package func saveSandbox(_ record: SandboxRecord) async throws {
        let query: PostgresQuery = """
            INSERT INTO sandbox (\(unescaped: Self.sandboxColumns))
            VALUES (\(record.sandboxId), \(record.requestId), \(record.state.rawValue), \(record.path), \(record.repoPath), \(record.workDir),
                    \(record.baseSha), \(record.createdAt), \(record.updatedAt), \(record.cleanupAfter), \(record.replica))
            ON CONFLICT (sandbox_id) DO UPDATE SET request_id = EXCLUDED.request_id, state = EXCLUDED.state, path = EXCLUDED.path,
                repo_path = EXCLUDED.repo_path, work_dir = EXCLUDED.work_dir, base_sha = EXCLUDED.base_sha,
                created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, cleanup_after = EXCLUDED.cleanup_after,
                replica = EXCLUDED.replica
            """
        try await client.query(query, logger: logger)
    }

    /// One sandbox by id.
    package func sandbox(_ sandboxId: String) async throws -> SandboxRecord? {
        try await sandboxes("SELECT \(unescaped: Self.sandboxColumns) FROM sandbox WHERE sandbox_id = \(sandboxId)").first
    }

    /// Sandboxes, newest first, optionally in one state or of one request.
    package func fetchSandboxes(state: SandboxRecord.State?, requestId: String?) async throws -> [SandboxRecord] {
        try await sandboxes(
            """
            SELECT \(unescaped: Self.sandboxColumns) FROM sandbox
            WHERE (\(state?.rawValue)::text IS NULL OR state = \(state?.rawValue)) AND (\(requestId)::text IS NULL OR request_id = \(requestId))
            ORDER BY created_at DESC, sandbox_id
            """
        )
    }
}
