import DispatchCore
import DispatchStore
import Foundation
import Logging
import PostgresNIO

/// The ``DispatchStore`` on PostgreSQL (CONTRACT §8), for several `serve` replicas on one database: the primary key
/// is the dedupe, every status change is one conditional statement or a transaction holding the row (`FOR UPDATE`),
/// so "terminal is final" and "one owner at a time" hold across replicas. The inbox files stay local: the replica
/// that commits a change writes the file into its own inbox dir.
package final class PostgresDispatchStore: DispatchStore {
    package let stateDir: String
    /// `postgres`.
    package var kind: String { "postgres" }
    package let inboxDir: String
    package let leaseDuration: TimeInterval
    /// Where the database is, without its password.
    package let url: DatabaseURL
    let client: PostgresClient
    let logger: Logger

    /// Opens the store at `url` for the length of `body`: runs its connection pool beside `body` (a child task,
    /// ended when `body` returns or throws), creates or migrates the schema (one replica at a time, under an advisory
    /// lock) and hands the store to `body`.
    package static func withStore<T>(
        url: DatabaseURL,
        stateDir: String,
        inboxDir: String,
        leaseSeconds: Int = 15,
        connectTimeout: Duration = .seconds(15),
        logger: Logger,
        _ body: (PostgresDispatchStore) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: url.configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            let store = try await PostgresDispatchStore(
                client: client,
                url: url,
                stateDir: stateDir,
                inboxDir: inboxDir,
                leaseSeconds: leaseSeconds,
                connectTimeout: connectTimeout,
                logger: logger
            )
            return try await body(store)
        }
    }

    /// Opens the store at `url`, handing its connection pool's `run()` to `start`: the caller runs it in a task
    /// group of its own for as long as it uses the store (a command's scope), and ends it by cancelling that task.
    package static func open(
        url: DatabaseURL,
        stateDir: String,
        inboxDir: String,
        leaseSeconds: Int = 15,
        connectTimeout: Duration = .seconds(15),
        logger: Logger,
        running start: (@escaping @Sendable () async -> Void) -> Void
    ) async throws -> PostgresDispatchStore {
        let client = PostgresClient(configuration: url.configuration, backgroundLogger: logger)
        start { await client.run() }
        return try await PostgresDispatchStore(
            client: client,
            url: url,
            stateDir: stateDir,
            inboxDir: inboxDir,
            leaseSeconds: leaseSeconds,
            connectTimeout: connectTimeout,
            logger: logger
        )
    }

    /// The store on `client`, whose `run()` the caller keeps running while the store is used (see
    /// ``withStore(url:stateDir:inboxDir:leaseSeconds:connectTimeout:logger:_:)``): creates or migrates the schema.
    package init(
        client: PostgresClient,
        url: DatabaseURL,
        stateDir: String,
        inboxDir: String,
        leaseSeconds: Int = 15,
        connectTimeout: Duration = .seconds(15),
        logger: Logger
    ) async throws {
        self.url = url
        self.stateDir = stateDir
        self.inboxDir = inboxDir
        self.leaseDuration = TimeInterval(max(1, leaseSeconds))
        self.logger = logger
        self.client = client
        do {
            try FileManager.default.createDirectory(atPath: inboxDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            // The pool retries a refused connection for ever: a database that does not answer in time is an error.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await PostgresSchema.migrate(client, logger: logger) }
                group.addTask {
                    try await Task.sleep(for: connectTimeout)
                    throw DispatchStoreError(code: .openFailed, message: "no answer within \(connectTimeout)")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            throw DispatchStoreError(code: .openFailed, message: "cannot open the PostgreSQL store at \(url.redacted): \(String(reflecting: error))")
        }
    }

    /// Epoch milliseconds one lease from now.
    func leaseDeadline() -> Int64 { Int64((Date().timeIntervalSince1970 + leaseDuration) * 1000) }

    /// The columns every record is read from, in ``Row`` order.
    static let columns = "request_id, request_json, result_json, owner_json, created_at, sequence, lease_expires_at"

    /// One `dispatch` row as read.
    typealias Row = (String, String, String, String?, String, Int64, Int64?)

    static func record(_ row: Row) throws -> DispatchRecord {
        do {
            let decoder = JSONDecoder()
            return DispatchRecord(
                request: try decoder.decode(DispatchRequest.self, from: Data(row.1.utf8)),
                result: try decoder.decode(DispatchResult.self, from: Data(row.2.utf8)),
                owner: try row.3.map { try decoder.decode(RunnerOwner.self, from: Data($0.utf8)) },
                createdAt: row.4,
                sequence: row.5,
                leaseExpiresAt: row.6.map { Date(timeIntervalSince1970: Double($0) / 1000) }
            )
        } catch {
            throw DispatchStoreError(code: .corruptRecord, message: "stored dispatch \(row.0) cannot be decoded", underlying: error)
        }
    }

    /// The records `query` selects (``columns``, in order).
    func records(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [DispatchRecord] {
        let rows: PostgresRowSequence
        if let connection {
            rows = try await connection.query(query, logger: logger)
        } else {
            rows = try await client.query(query, logger: logger)
        }
        var records: [DispatchRecord] = []
        for try await row in rows.decode(Row.self) { records.append(try Self.record(row)) }
        return records
    }

    /// Records a new request; the primary key is the dedupe across every replica. Writes the inbox file when inserted.
    package func insert(_ result: DispatchResult, request: DispatchRequest, owner: RunnerOwner?) async throws -> StoreInsertOutcome {
        let requestJSON = try StoreJSON.string(request)
        let resultJSON = try StoreJSON.string(result)
        let ownerJSON = try owner.map(StoreJSON.string)
        let lease: Int64? = owner == nil ? nil : leaseDeadline()
        let now = ISO8601.string(Date())
        let query: PostgresQuery = """
            INSERT INTO dispatch (request_id, status, tool, request_json, result_json, owner_json, created_at, updated_at, lease_expires_at)
            VALUES (\(request.requestId), \(result.status.rawValue), \(request.tool.rawValue), \(requestJSON), \(resultJSON), \(ownerJSON), \(now),
                    \(result.updatedAt), \(lease))
            ON CONFLICT (request_id) DO NOTHING
            RETURNING \(unescaped: Self.columns)
            """
        if let inserted = try await records(query).first {
            writeInbox(inserted)
            return .inserted(inserted)
        }
        guard let existing = try await record(request.requestId) else {
            throw DispatchStoreError(code: .notFound, message: "dispatch \(request.requestId) vanished during insert")
        }
        return .existing(existing)
    }

    /// Replaces the result of a non-terminal request (one conditional statement); a terminal result is never replaced.
    package func update(_ result: DispatchResult, owner: RunnerOwner?) async throws -> StoreUpdateOutcome {
        let resultJSON = try StoreJSON.string(result)
        let ownerJSON = try owner.map(StoreJSON.string)
        let lease: Int64? = owner == nil ? nil : leaseDeadline()
        let query: PostgresQuery = """
            UPDATE dispatch SET status = \(result.status.rawValue), result_json = \(resultJSON), updated_at = \(result.updatedAt),
                owner_json = COALESCE(\(ownerJSON), owner_json), lease_expires_at = COALESCE(\(lease), lease_expires_at)
            WHERE request_id = \(result.requestId) AND status IN ('queued', 'running')
            RETURNING \(unescaped: Self.columns)
            """
        if let updated = try await records(query).first {
            writeInbox(updated)
            return .updated(updated)
        }
        guard let current = try await record(result.requestId) else {
            throw DispatchStoreError(code: .notFound, message: "no dispatch with requestId \(result.requestId)")
        }
        return .alreadyTerminal(current)
    }

    /// Compare-and-set of a row's owner, holding the row (`FOR UPDATE`) for the read-modify-write of `queued` →
    /// `running`: only one replica's claim passes.
    package func claim(_ requestId: String, from expected: RunnerOwner?, to owner: RunnerOwner, startedAt: String?) async throws -> DispatchRecord? {
        let expectedJSON = try expected.map(StoreJSON.string)
        let ownerJSON = try StoreJSON.string(owner)
        let until = leaseDeadline()
        let store = self
        let claimed: DispatchRecord? = try await client.withTransaction(logger: logger) { connection in
            let locked: PostgresQuery = """
                SELECT \(unescaped: Self.columns) FROM dispatch WHERE request_id = \(requestId) AND status IN ('queued', 'running')
                AND owner_json IS NOT DISTINCT FROM \(expectedJSON) FOR UPDATE
                """
            guard var record = try await store.records(locked, on: connection).first else { return nil }
            if record.status == .queued { record.result.markStarted(at: startedAt ?? ISO8601.string(Date())) }
            let resultJSON = try StoreJSON.string(record.result)
            let write: PostgresQuery = """
                UPDATE dispatch SET status = \(record.result.status.rawValue), result_json = \(resultJSON), updated_at = \(record.result.updatedAt),
                    owner_json = \(ownerJSON), lease_expires_at = \(until)
                WHERE request_id = \(requestId)
                RETURNING \(unescaped: Self.columns)
                """
            return try await store.records(write, on: connection).first
        }
        if let claimed { writeInbox(claimed) }
        return claimed
    }

    /// Takes the oldest `queued` row of any replica: the row is held (`FOR UPDATE SKIP LOCKED`) while it is turned
    /// `running`, so concurrent claimers take different rows and each row is taken once.
    package func claimNextQueued(owner: RunnerOwner, startedAt: String) async throws -> DispatchRecord? {
        let ownerJSON = try StoreJSON.string(owner)
        let until = leaseDeadline()
        let store = self
        let claimed: DispatchRecord? = try await client.withTransaction(logger: logger) { connection in
            guard var record = try await store.nextQueued(on: connection) else { return nil }
            record.result.markStarted(at: startedAt)
            let resultJSON = try StoreJSON.string(record.result)
            let write: PostgresQuery = """
                UPDATE dispatch SET status = 'running', result_json = \(resultJSON), updated_at = \(startedAt), owner_json = \(ownerJSON),
                    lease_expires_at = \(until)
                WHERE request_id = \(record.requestId)
                RETURNING \(unescaped: Self.columns)
                """
            return try await store.records(write, on: connection).first
        }
        if let claimed { writeInbox(claimed) }
        return claimed
    }

    /// The oldest `queued` row this replica can read, locked for this transaction. A row it cannot decode (one a
    /// newer version wrote, or a damaged one) is passed over and left as it is — for a replica that can read it, or
    /// for whoever looks into it — so that it does not stop the queue for everyone.
    func nextQueued(on connection: PostgresConnection) async throws -> DispatchRecord? {
        var unreadable: [String] = []
        while unreadable.count < 100 {
            let next: PostgresQuery = """
                SELECT \(unescaped: Self.columns) FROM dispatch WHERE status = 'queued' AND NOT (request_id = ANY(\(unreadable)))
                ORDER BY sequence LIMIT 1 FOR UPDATE SKIP LOCKED
                """
            var row: Row?
            for try await found in try await connection.query(next, logger: logger).decode(Row.self) { row = found }
            guard let row else { return nil }
            do {
                return try Self.record(row)
            } catch {
                logger.error("a queued dispatch cannot be read here; passed over", metadata: ["request.id": "\(row.0)", "error": "\(error)"])
                unreadable.append(row.0)
            }
        }
        return nil
    }

    /// Gives a claimed request back to the queue (this replica began shutting down between the claim and the start).
    package func unclaim(_ record: DispatchRecord, owner: RunnerOwner) async throws {
        var queued = record.result
        queued.markQueuedAgain()
        let resultJSON = try StoreJSON.string(queued)
        let ownerJSON = try StoreJSON.string(owner)
        let query: PostgresQuery = """
            UPDATE dispatch SET status = 'queued', result_json = \(resultJSON), owner_json = NULL, lease_expires_at = NULL
            WHERE request_id = \(record.requestId) AND status = 'running' AND owner_json = \(ownerJSON)
            """
        try await client.query(query, logger: logger)
    }

    /// Stores `result` only while the row is still `queued` (one conditional statement).
    package func cancelQueued(_ result: DispatchResult) async throws -> DispatchRecord? {
        let resultJSON = try StoreJSON.string(result)
        let query: PostgresQuery = """
            UPDATE dispatch SET status = \(result.status.rawValue), result_json = \(resultJSON), updated_at = \(result.updatedAt)
            WHERE request_id = \(result.requestId) AND status = 'queued'
            RETURNING \(unescaped: Self.columns)
            """
        let cancelled = try await records(query).first
        if let cancelled { writeInbox(cancelled) }
        return cancelled
    }

    /// Extends the lease of every non-terminal row `owner` holds; returns how many rows it holds.
    package func renewLeases(of owner: RunnerOwner) async throws -> Int {
        let ownerJSON = try StoreJSON.string(owner)
        let query: PostgresQuery = """
            UPDATE dispatch SET lease_expires_at = \(leaseDeadline()) WHERE owner_json = \(ownerJSON) AND status IN ('queued', 'running')
            RETURNING request_id
            """
        var count = 0
        for try await _ in try await client.query(query, logger: logger).decode(String.self) { count += 1 }
        return count
    }

    /// The stored record of `requestId`, if any.
    package func record(_ requestId: String) async throws -> DispatchRecord? {
        try await records("SELECT \(unescaped: Self.columns) FROM dispatch WHERE request_id = \(requestId)").first
    }

    /// Records newest first; `prefix` is matched with `starts_with` (no wildcard in an id can widen it, and no
    /// collation can narrow it: a key range sorts differently under a linguistic locale), `before` a sequence cursor.
    package func fetchList(status: DispatchStatus?, prefix: String?, before: Int64?, limit: Int) async throws -> [DispatchRecord] {
        let prefix = prefix.flatMap { $0.isEmpty ? nil : $0 }
        let query: PostgresQuery = """
            SELECT \(unescaped: Self.columns) FROM dispatch
            WHERE (\(status?.rawValue)::text IS NULL OR status = \(status?.rawValue))
              AND (\(prefix)::text IS NULL OR starts_with(request_id, \(prefix)))
              AND (\(before)::bigint IS NULL OR sequence < \(before))
            ORDER BY sequence DESC LIMIT \(limit)
            """
        return try await records(query)
    }

    /// Every record still `queued` or `running`, oldest first.
    package func nonTerminal() async throws -> [DispatchRecord] {
        try await records("SELECT \(unescaped: Self.columns) FROM dispatch WHERE status IN ('queued', 'running') ORDER BY sequence ASC")
    }

    /// Counts of records by status.
    package func counts() async throws -> [DispatchStatus: Int] {
        var counts: [DispatchStatus: Int] = [:]
        let rows = try await client.query("SELECT status, COUNT(*) FROM dispatch GROUP BY status", logger: logger)
        for try await (status, count) in rows.decode((String, Int64).self) {
            if let status = DispatchStatus(rawValue: status) { counts[status] = Int(count) }
        }
        return counts
    }

    /// How many requests are queued: one index range (`/metrics` asks on every scrape, unauthenticated).
    package func queuedCount() async throws -> Int {
        let rows = try await client.query("SELECT COUNT(*) FROM dispatch WHERE status = 'queued'", logger: logger)
        for try await count in rows.decode(Int64.self) { return Int(count) }
        return 0
    }

    /// Whether the database accepts a write right now (readiness includes the database).
    package func isWritable() async -> Bool {
        (try? await client.query("SELECT 1 WHERE pg_is_in_recovery() = false", logger: logger).decode(Int32.self).first { _ in true }) != nil
    }

}
