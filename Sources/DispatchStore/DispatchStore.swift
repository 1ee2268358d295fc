import DispatchCore
import Foundation

/// Outcome of an insert: this caller owns the new request, or it already existed.
package enum StoreInsertOutcome: Sendable {
    case inserted(DispatchRecord)
    case existing(DispatchRecord)
}

/// Outcome of an update: applied, or refused because the stored result is already terminal.
package enum StoreUpdateOutcome: Sendable {
    case updated(DispatchRecord)
    case alreadyTerminal(DispatchRecord)

    /// The record as stored after the call.
    package var record: DispatchRecord {
        switch self {
        case .updated(let record), .alreadyTerminal(let record): record
        }
    }
}

/// Where dispatches are recorded: the one atomic dedupe, compare-and-set claims, leases, terminal-is-final updates,
/// and the inbox files kept in step with the rows.
///
/// ``SQLiteDispatchStore`` (GRDB, WAL) is today's implementation; every rule the engine relies on is stated here so
/// that another (PostgreSQL, for several replicas) can be held to it.
/// What a store shared by several processes tells each of them as it happens.
package enum StoreEvent: Sendable, Equatable {
    /// A terminal result of `requestId` was committed (by any process).
    case committed(requestId: String)
    /// A request was stored `queued` (by any process): a process with a free slot may claim it.
    case queued(requestId: String)
    /// Someone asked (on any process) for `requestId` to be cancelled: its owner ends it.
    case cancelRequested(requestId: String)
    /// Events may have been missed (the notification connection dropped and is back): re-read what you wait for.
    case resync
}

/// A `serve` replica as a shared store knows it (CONTRACT §8): the URL its peers reach it at, and how long ago it
/// last said it was alive (by the database's clock, so replicas' clocks need not agree).
package struct ReplicaInfo: Sendable, Equatable {
    package var name: String
    package var url: String?
    package var silentForMs: Int64

    package init(name: String, url: String?, silentForMs: Int64) {
        self.name = name
        self.url = url
        self.silentForMs = silentForMs
    }
}

package protocol DispatchStore: Sendable {
    typealias InsertOutcome = StoreInsertOutcome
    typealias UpdateOutcome = StoreUpdateOutcome

    /// Hands events of commits by every process on this store to `handle`, in the calling task until it is
    /// cancelled, for a store that has them (PostgreSQL's LISTEN/NOTIFY, ``announcesCommits``); returns at once for
    /// one whose other processes' commits are seen only by reading (the embedded SQLite store).
    func watchEvents(_ handle: @Sendable (StoreEvent) async -> Void) async

    /// Whether ``watchEvents(_:)`` announces every process's terminal commits (then nobody needs to poll for them), and
    /// the queue is the store's: every process on it claims queued requests from it (``claimNextQueued(owner:startedAt:)``).
    var announcesCommits: Bool { get }

    /// Takes the oldest `queued` request of any process (FIFO) for `owner`: `queued` → `running` with `startedAt` and a
    /// fresh lease, exactly once however many claim at once. `nil` when nothing is queued.
    func claimNextQueued(owner: RunnerOwner, startedAt: String) async throws -> DispatchRecord?

    /// Stores `result` (cancelled) for a request only while it is still `queued` (compare-and-set); `nil` when it is
    /// not queued any more (a process claimed it meanwhile, or it ended).
    func cancelQueued(_ result: DispatchResult) async throws -> DispatchRecord?

    /// Gives a request `owner` claimed from the queue back to it (queued, no owner), if `owner` still holds it.
    func unclaim(_ record: DispatchRecord, owner: RunnerOwner) async throws

    /// Records that `requestId` is to be cancelled with `reason` and announces it to every process (its owner ends
    /// it). `false` when this store cannot carry the request to another process (the embedded store).
    func requestCancel(_ requestId: String, reason: String) async throws -> Bool

    /// Cancels asked for requests that are not terminal yet (a missed announcement), by requestId, with their reasons.
    func pendingCancels() async throws -> [String: String]

    /// Says replica `name` is alive and reachable at `url` (every lease upkeep). A no-op for a store one process uses.
    func advertise(replica name: String, url: String?) async throws

    /// What the store knows of replica `name`; `nil` when it never advertised (or the store is not shared).
    func replica(named name: String) async throws -> ReplicaInfo?

    /// How many requests are queued (the depth of a shared queue).
    func queuedCount() async throws -> Int

    /// Where the store keeps its state (the database of the embedded store).
    var stateDir: String { get }
    /// What `GET /` reports as `store`: `sqlite` or `postgres`.
    var kind: String { get }
    /// Where `<requestId>.json` result files go.
    var inboxDir: String { get }
    /// How long an owner's lease holds after each renewal.
    var leaseDuration: TimeInterval { get }

    /// The inbox file of `requestId`.
    func inboxPath(_ requestId: String) -> String

    /// Records a new request unless its id is known (atomically: of two racing inserts, one wins).
    func insert(_ result: DispatchResult, request: DispatchRequest, owner: RunnerOwner?) async throws -> StoreInsertOutcome

    /// Stores `result` unless the stored one is terminal (terminal states are final); `owner` replaces the owner when given.
    func update(_ result: DispatchResult, owner: RunnerOwner?) async throws -> StoreUpdateOutcome

    /// Compare-and-set of a row's owner from `expected` to `owner` (and `queued` → `running`), with a fresh lease;
    /// `nil` when the row is terminal or someone else holds it now.
    func claim(_ requestId: String, from expected: RunnerOwner?, to owner: RunnerOwner, startedAt: String?) async throws -> DispatchRecord?

    /// Extends the lease of every non-terminal row `owner` holds; returns how many it holds.
    @discardableResult
    func renewLeases(of owner: RunnerOwner) async throws -> Int

    /// The record of `requestId`, if any.
    func record(_ requestId: String) async throws -> DispatchRecord?

    /// Records newest first, filtered by status and id prefix, before the cursor `before` (callers use ``list(status:prefix:before:limit:)``).
    func fetchList(status: DispatchStatus?, prefix: String?, before: Int64?, limit: Int) async throws -> [DispatchRecord]

    /// Every queued or running record, oldest first.
    func nonTerminal() async throws -> [DispatchRecord]

    /// How many records are in each status.
    func counts() async throws -> [DispatchStatus: Int]

    /// Whether a write goes through now (`/readyz`).
    func isWritable() async -> Bool

    /// Rewrites inbox files that are missing or lag their row; returns how many were rewritten.
    @discardableResult
    func resyncInbox(limit: Int) async throws -> Int

    /// Inserts or replaces a sandbox's registry row.
    func saveSandbox(_ record: SandboxRecord) async throws

    /// The sandbox row `sandboxId`, if any.
    func sandbox(_ sandboxId: String) async throws -> SandboxRecord?

    /// Sandbox rows, filtered by state and request (callers use ``sandboxes(state:requestId:)``).
    func fetchSandboxes(state: SandboxRecord.State?, requestId: String?) async throws -> [SandboxRecord]
}

extension DispatchStore {
    /// The inbox file of `requestId`.
    package func inboxPath(_ requestId: String) -> String { "\(inboxDir)/\(requestId).json" }

    /// Writes the inbox file of a committed row into this process's inbox dir, from the row (after the commit: the
    /// inbox never shows what the store does not hold). A failure is left for ``resyncInbox(limit:)`` at the next start.
    package func writeInbox(_ record: DispatchRecord) {
        guard let data = try? StoreJSON.encode(record.result) else { return }
        try? AtomicFile.write(data, to: inboxPath(record.requestId))
    }

    /// Rewrites inbox files that are missing or lag their row (an inbox write that failed after its commit, a crash in
    /// between). Returns how many were rewritten.
    @discardableResult
    package func resyncInbox(limit: Int) async throws -> Int {
        var rewritten = 0
        for record in try await list(limit: limit) {
            guard let data = try? StoreJSON.encode(record.result) else { continue }
            if FileManager.default.contents(atPath: inboxPath(record.requestId)) != data {
                try? AtomicFile.write(data, to: inboxPath(record.requestId))
                rewritten += 1
            }
        }
        return rewritten
    }

    /// No events by default: other processes' commits are seen by reading.
    package func watchEvents(_ handle: @Sendable (StoreEvent) async -> Void) async {}

    /// Commits of other processes are not announced by default.
    package var announcesCommits: Bool { false }

    /// Nothing carries a cancel to another process by default.
    package func requestCancel(_ requestId: String, reason: String) async throws -> Bool { false }

    /// No cancels are pending by default.
    package func pendingCancels() async throws -> [String: String] { [:] }

    /// Nobody else reads replicas by default.
    package func advertise(replica name: String, url: String?) async throws {}

    /// No replicas are known by default.
    package func replica(named name: String) async throws -> ReplicaInfo? { nil }

    /// The queued count of ``counts()`` by default.
    package func queuedCount() async throws -> Int { try await counts()[.queued] ?? 0 }

    /// Stores `result`, keeping the owner.
    package func update(_ result: DispatchResult) async throws -> StoreUpdateOutcome { try await update(result, owner: nil) }

    /// A claim that keeps `startedAt` as the store sets it.
    package func claim(_ requestId: String, from expected: RunnerOwner?, to owner: RunnerOwner) async throws -> DispatchRecord? {
        try await claim(requestId, from: expected, to: owner, startedAt: nil)
    }

    /// Records newest first, at most `limit`.
    package func list(status: DispatchStatus? = nil, prefix: String? = nil, before: Int64? = nil, limit: Int = 50) async throws -> [DispatchRecord] {
        try await fetchList(status: status, prefix: prefix, before: before, limit: limit)
    }

    /// Rewrites up to 10,000 lagging inbox files.
    @discardableResult
    package func resyncInbox() async throws -> Int { try await resyncInbox(limit: 10_000) }

    /// Sandbox rows, filtered.
    package func sandboxes(state: SandboxRecord.State? = nil, requestId: String? = nil) async throws -> [SandboxRecord] {
        try await fetchSandboxes(state: state, requestId: requestId)
    }
}
