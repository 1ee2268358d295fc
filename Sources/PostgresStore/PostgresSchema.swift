import DispatchStore
import Logging
import PostgresNIO

/// The PostgreSQL schema and its history. Several replicas may start at once: each migrates inside one
/// transaction holding an advisory lock, so exactly one creates or upgrades the tables and the others see them.
enum PostgresSchema {
    /// `pg_advisory_xact_lock` key of the migration ("agent-dispatch" in a bigint).
    static let migrationLock: Int64 = 0x6167_6469_7370_6174

    /// Statements of each version, applied in order; never edit a released one.
    static let versions: [[PostgresQuery]] = [
        [
            """
            CREATE TABLE dispatch (
                request_id text PRIMARY KEY,
                status text NOT NULL,
                tool text NOT NULL,
                request_json text NOT NULL,
                result_json text NOT NULL,
                owner_json text,
                created_at text NOT NULL,
                updated_at text NOT NULL,
                sequence bigserial NOT NULL UNIQUE,
                lease_expires_at bigint
            )
            """,
            "CREATE INDEX dispatch_status_sequence ON dispatch (status, sequence)",
            """
            CREATE TABLE sandbox (
                sandbox_id text PRIMARY KEY,
                request_id text NOT NULL,
                state text NOT NULL,
                path text NOT NULL,
                repo_path text NOT NULL,
                work_dir text NOT NULL,
                base_sha text NOT NULL,
                created_at text NOT NULL,
                updated_at text NOT NULL,
                cleanup_after text
            )
            """,
            "CREATE INDEX sandbox_request ON sandbox (request_id)",
            "CREATE INDEX sandbox_state ON sandbox (state)",
        ],
        // Every replica's LISTEN hears of a terminal result at the commit that makes it so (an insert of one too:
        // `dispatch store import`), and of a request stored queued (or given back to the queue).
        [
            """
            CREATE FUNCTION dispatch_notify_terminal() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.status IN ('completed', 'failed', 'cancelled')
                   AND (TG_OP = 'INSERT' OR OLD.status NOT IN ('completed', 'failed', 'cancelled')) THEN
                    PERFORM pg_notify('\(unescaped: channel)', 'terminal:' || NEW.request_id);
                ELSIF NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued') THEN
                    PERFORM pg_notify('\(unescaped: channel)', 'queued:' || NEW.request_id);
                END IF;
                RETURN NEW;
            END
            $$
            """,
            """
            CREATE TRIGGER dispatch_terminal AFTER INSERT OR UPDATE OF status ON dispatch
            FOR EACH ROW EXECUTE FUNCTION dispatch_notify_terminal()
            """,
        ],
        // A cancel asked on one replica for a run another holds: recorded, announced (`cancel:<id>`), acted on by
        // the owner; forgotten once the request is terminal.
        [
            "CREATE TABLE cancel_request (request_id text PRIMARY KEY, reason text NOT NULL, requested_at text NOT NULL)",
            """
            CREATE FUNCTION dispatch_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('\(unescaped: channel)', 'cancel:' || NEW.request_id);
                RETURN NEW;
            END
            $$
            """,
            "CREATE TRIGGER cancel_requested AFTER INSERT ON cancel_request FOR EACH ROW EXECUTE FUNCTION dispatch_notify_cancel()",
            """
            CREATE FUNCTION dispatch_forget_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM cancel_request WHERE request_id = NEW.request_id;
                RETURN NEW;
            END
            $$
            """,
            """
            CREATE TRIGGER dispatch_forget_cancel AFTER UPDATE OF status ON dispatch FOR EACH ROW
            WHEN (NEW.status IN ('completed', 'failed', 'cancelled')) EXECUTE FUNCTION dispatch_forget_cancel()
            """,
        ],
        // Replicas say where they are and that they live (every lease upkeep): the logs and patch of a run are
        // proxied to the replica that holds them.
        [
            "CREATE TABLE replica (name text PRIMARY KEY, url text, seen_at timestamptz NOT NULL)"
        ],
        // The replica whose disk holds a sandbox: only its janitor reconciles and removes it.
        ["ALTER TABLE sandbox ADD COLUMN replica text"],
    ]

    /// The channel commits are announced on: `terminal:<requestId>` when a result becomes terminal, `queued:<requestId>`
    /// when a request is stored queued.
    static let channel = "dispatch_events"

    /// Brings the schema to the newest version (a no-op when it is there); returns the version it found.
    @discardableResult
    static func migrate(_ client: PostgresClient, logger: Logger) async throws -> Int {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.query("CREATE TABLE IF NOT EXISTS dispatch_schema (version integer NOT NULL)", logger: logger)
            var found = 0
            for try await version in try await connection.query("SELECT version FROM dispatch_schema", logger: logger).decode(Int32.self) {
                found = max(found, Int(version))
            }
            guard found <= versions.count else {
                throw DispatchStoreError(
                    code: .openFailed,
                    message: "the database's schema is version \(found), newer than this dispatch knows (\(versions.count)): upgrade dispatch"
                )
            }
            for (index, statements) in versions.enumerated() where index >= found {
                for statement in statements { try await connection.query(statement, logger: logger) }
            }
            try await connection.query("DELETE FROM dispatch_schema", logger: logger)
            try await connection.query("INSERT INTO dispatch_schema (version) VALUES (\(Int32(versions.count)))", logger: logger)
            return found
        }
    }
}
