import DispatchCore
import Foundation
import GRDB
import Synchronization

/// The embedded ``DispatchStore``: SQLite (WAL) under the state dir, plus the inbox files it keeps in step.
///
/// Every status change and its inbox file are written inside one write transaction, so writers from
/// several processes serialise on SQLite's lock and the inbox never shows an older state than the row.
package final class SQLiteDispatchStore: DispatchStore {
    /// Where the database lives.
    package let stateDir: String
    /// `sqlite`.
    package var kind: String { "sqlite" }
    /// Where `<requestId>.json` result files go.
    package let inboxDir: String
    /// How long an owner's lease holds after each renewal (`DISPATCH_LEASE_SECONDS`).
    package let leaseDuration: TimeInterval
    /// Injected write failures (`DISPATCH_FAULT_STORE_WRITES`), for the fault suite.
    let faults: StoreFaults
    let pool: DatabasePool

    /// Opens (creating if needed) the store in `stateDir` and the inbox in `inboxDir`.
    package init(stateDir: String, inboxDir: String, leaseSeconds: Int = 15) throws {
        self.stateDir = stateDir
        self.inboxDir = inboxDir
        self.leaseDuration = TimeInterval(max(1, leaseSeconds))
        self.faults = StoreFaults(ProcessInfo.processInfo.environment["DISPATCH_FAULT_STORE_WRITES"])
        do {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: inboxDir, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.busyMode = .timeout(60)
            // WAL with synchronous=NORMAL: a commit survives any process crash (the guarantee results need);
            // only an OS crash or power loss can roll back the last commits. FULL would fsync every commit.
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            configuration.label = "agent-dispatch"
            pool = try DatabasePool(path: "\(stateDir)/dispatch.sqlite", configuration: configuration)
            try Self.withFileLock("\(stateDir)/dispatch.sqlite.migrate-lock") {
                try Self.migrator.migrate(pool)
            }
        } catch let error as DispatchStoreError {
            throw error
        } catch {
            throw DispatchStoreError(code: .openFailed, message: "cannot open the state store in \(stateDir)", underlying: error)
        }
    }

    /// Records a new request atomically (the primary key is the dedupe); writes its inbox file when inserted.
    package func insert(_ result: DispatchResult, request: DispatchRequest, owner: RunnerOwner?) async throws -> InsertOutcome {
        let outcome: InsertOutcome = try await pool.write { db in
            let now = ISO8601.string(Date())
            var row = DispatchRow(
                requestId: request.requestId,
                status: result.status.rawValue,
                tool: request.tool.rawValue,
                requestJSON: try StoreJSON.string(request),
                resultJSON: try StoreJSON.string(result),
                ownerJSON: try owner.map(StoreJSON.string),
                createdAt: now,
                updatedAt: result.updatedAt,
                sequence: nil,
                leaseExpiresAt: owner == nil ? nil : self.leaseDeadline()
            )
            try db.execute(
                sql: """
                    INSERT INTO dispatch (requestId, status, tool, requestJSON, resultJSON, ownerJSON, createdAt, updatedAt, sequence, leaseExpiresAt)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT IFNULL(MAX(sequence), 0) + 1 FROM dispatch), ?)
                    ON CONFLICT(requestId) DO NOTHING
                    """,
                arguments: [
                    row.requestId, row.status, row.tool, row.requestJSON, row.resultJSON, row.ownerJSON, row.createdAt, row.updatedAt,
                    row.leaseExpiresAt,
                ]
            )
            if db.changesCount == 0 {
                guard let existing = try DispatchRow.fetchOne(db, key: request.requestId) else {
                    throw DispatchStoreError(code: .notFound, message: "dispatch \(request.requestId) vanished during insert")
                }
                return .existing(try existing.record())
            }
            row.sequence = db.lastInsertedRowID
            return .inserted(try row.record())
        }
        if case .inserted(let record) = outcome { writeInbox(record) }
        return outcome
    }

    /// Replaces the result of a non-terminal request (and its inbox file); a terminal result is never replaced.
    ///
    /// `owner` replaces the stored owner when given (a queued request taken over by a runner).
    @discardableResult
    package func update(_ result: DispatchResult, owner: RunnerOwner?) async throws -> UpdateOutcome {
        if result.status.isTerminal, faults.failTerminalWrite() {
            throw DispatchStoreError(
                code: .writeFailed,
                message: "cannot store the result of \(result.requestId): injected fault (DISPATCH_FAULT_STORE_WRITES)"
            )
        }
        let outcome: UpdateOutcome = try await pool.write { db in
            guard var row = try DispatchRow.fetchOne(db, key: result.requestId) else {
                throw DispatchStoreError(code: .notFound, message: "no dispatch with requestId \(result.requestId)")
            }
            if let current = DispatchStatus(rawValue: row.status), current.isTerminal {
                return .alreadyTerminal(try row.record())
            }
            row.status = result.status.rawValue
            row.resultJSON = try StoreJSON.string(result)
            row.updatedAt = result.updatedAt
            if let owner {
                row.ownerJSON = try StoreJSON.string(owner)
                row.leaseExpiresAt = self.leaseDeadline()
            }
            try row.update(db)
            return .updated(try row.record())
        }
        if case .updated(let record) = outcome { writeInbox(record) }
        return outcome
    }

    /// Compare-and-set of a row's owner: `requestId` passes from `expected` (its stored owner, `nil` for none) to
    /// `owner`, with a fresh lease, and from `queued` to `running` — only if the row is still non-terminal and still
    /// held by `expected`. Returns the claimed record, or `nil` when someone else got there first.
    package func claim(
        _ requestId: String,
        from expected: RunnerOwner?,
        to owner: RunnerOwner,
        startedAt: String?
    ) async throws -> DispatchRecord? {
        let expectedJSON = try expected.map(StoreJSON.string)
        let ownerJSON = try StoreJSON.string(owner)
        let until = leaseDeadline()
        let claimed: DispatchRecord? = try await pool.write { db in
            guard var row = try DispatchRow.fetchOne(db, key: requestId), row.ownerJSON == expectedJSON,
                let status = DispatchStatus(rawValue: row.status), !status.isTerminal
            else { return nil }
            if status == .queued { try row.start(at: startedAt ?? ISO8601.string(Date())) }
            row.ownerJSON = ownerJSON
            row.leaseExpiresAt = until
            try row.update(db)
            return try row.record()
        }
        if let claimed { writeInbox(claimed) }
        return claimed
    }

    /// Takes the oldest `queued` row for `owner` inside one write transaction (SQLite's writer lock makes it once).
    package func claimNextQueued(owner: RunnerOwner, startedAt: String) async throws -> DispatchRecord? {
        let ownerJSON = try StoreJSON.string(owner)
        let until = leaseDeadline()
        let claimed: DispatchRecord? = try await pool.write { db in
            guard
                var row = try DispatchRow.filter(DispatchRow.Columns.status == DispatchStatus.queued.rawValue)
                    .order(DispatchRow.Columns.sequence.asc).fetchOne(db)
            else { return nil }
            try row.start(at: startedAt)
            row.ownerJSON = ownerJSON
            row.leaseExpiresAt = until
            try row.update(db)
            return try row.record()
        }
        if let claimed { writeInbox(claimed) }
        return claimed
    }

    /// Gives a claimed request back to the queue if `owner` still holds it.
    package func unclaim(_ record: DispatchRecord, owner: RunnerOwner) async throws {
        var queued = record.result
        queued.markQueuedAgain()
        let resultJSON = try StoreJSON.string(queued)
        let ownerJSON = try StoreJSON.string(owner)
        try await pool.write { db in
            guard var row = try DispatchRow.fetchOne(db, key: record.requestId), row.status == DispatchStatus.running.rawValue,
                row.ownerJSON == ownerJSON
            else { return }
            row.status = DispatchStatus.queued.rawValue
            row.resultJSON = resultJSON
            row.ownerJSON = nil
            row.leaseExpiresAt = nil
            try row.update(db)
        }
    }

    /// Stores `result` only while the row is still `queued`.
    package func cancelQueued(_ result: DispatchResult) async throws -> DispatchRecord? {
        let resultJSON = try StoreJSON.string(result)
        let cancelled: DispatchRecord? = try await pool.write { db in
            guard var row = try DispatchRow.fetchOne(db, key: result.requestId), row.status == DispatchStatus.queued.rawValue else { return nil }
            row.status = result.status.rawValue
            row.resultJSON = resultJSON
            row.updatedAt = result.updatedAt
            try row.update(db)
            return try row.record()
        }
        if let cancelled { writeInbox(cancelled) }
        return cancelled
    }

    /// Extends the lease of every non-terminal row `owner` holds; returns how many rows it holds.
    @discardableResult
    package func renewLeases(of owner: RunnerOwner) async throws -> Int {
        let ownerJSON = try StoreJSON.string(owner)
        let until = leaseDeadline()
        return try await pool.write { db in
            try db.execute(
                sql: "UPDATE dispatch SET leaseExpiresAt = ? WHERE ownerJSON = ? AND status IN ('queued', 'running')",
                arguments: [until, ownerJSON]
            )
            return db.changesCount
        }
    }

    /// Epoch milliseconds one lease from now.
    func leaseDeadline() -> Int64 { Int64((Date().timeIntervalSince1970 + leaseDuration) * 1000) }

    /// The stored record of `requestId`, if any.
    package func record(_ requestId: String) async throws -> DispatchRecord? {
        try await pool.read { db in try DispatchRow.fetchOne(db, key: requestId)?.record() }
    }

    /// Records newest first, optionally only those in `status`.
    /// `prefix` keeps ids that start with it; `before` pages on from a record's ``DispatchRecord/sequence``.
    package func fetchList(status: DispatchStatus?, prefix: String?, before: Int64?, limit: Int) async throws -> [DispatchRecord] {
        try await pool.read { db in
            var query = DispatchRow.all()
            if let status { query = query.filter(DispatchRow.Columns.status == status.rawValue) }
            if let prefix, !prefix.isEmpty {
                // A range on the primary key, not LIKE: no wildcard in an id can widen it.
                query = query.filter(DispatchRow.Columns.requestId >= prefix && DispatchRow.Columns.requestId < prefix + "\u{10FFFF}")
            }
            if let before { query = query.filter(DispatchRow.Columns.sequence < before) }
            return try query.order(DispatchRow.Columns.sequence.desc).limit(limit).fetchAll(db).map { try $0.record() }
        }
    }

    /// Every record still `queued` or `running`, oldest first.
    package func nonTerminal() async throws -> [DispatchRecord] {
        try await pool.read { db in
            try DispatchRow.filter([DispatchStatus.queued.rawValue, DispatchStatus.running.rawValue].contains(DispatchRow.Columns.status))
                .order(DispatchRow.Columns.sequence.asc).fetchAll(db).map { try $0.record() }
        }
    }

    /// Counts of records by status.
    package func counts() async throws -> [DispatchStatus: Int] {
        try await pool.read { db in
            var counts: [DispatchStatus: Int] = [:]
            let rows = try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM dispatch GROUP BY status")
            for row in rows {
                if let status = DispatchStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }

    /// Whether the database accepts a write right now (readiness): a row of the database file itself is rewritten,
    /// which a full disk refuses (a temporary table lives in memory and never would).
    package func isWritable() async -> Bool {
        let now = ISO8601.string(Date())
        return (try? await pool.write { db in try db.execute(sql: "INSERT OR REPLACE INTO readiness(id, at) VALUES (1, ?)", arguments: [now]) })
            != nil
    }

    /// Runs `body` holding an exclusive `flock` on `path`, so concurrent processes migrate one at a time.
    static func withFileLock<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}

/// Fault injection for the fault suite: `DISPATCH_FAULT_STORE_WRITES=terminal` fails every terminal write,
/// `terminal:N` the first N. Unset in production.
final class StoreFaults: Sendable {
    private let remaining: Mutex<Int?>

    init(_ spec: String?) {
        guard let spec, spec.hasPrefix("terminal") else {
            remaining = Mutex(nil)
            return
        }
        let count = spec.split(separator: ":").dropFirst().first.flatMap { Int($0) } ?? Int.max
        remaining = Mutex(count)
    }

    /// Whether this terminal write is to fail.
    func failTerminalWrite() -> Bool {
        remaining.withLock { left in
            guard let count = left, count > 0 else { return false }
            left = count - 1
            return true
        }
    }
}
