import DispatchCore
import DispatchStore
import DispatchTestSupport
import Foundation
import Logging
import PostgresStore
import Testing

/// The stores the same tests run against: the embedded SQLite one and PostgreSQL (the test server `make test`
/// starts; without one these cases are skipped, unless `DISPATCH_POSTGRES_TESTS=required`).
/// Opens stores of one kind on one state dir (and, for PostgreSQL, one fresh database).
struct StoreFixture {
    let kind: StoreKind
    let dir = TempDir("store")
    let database: String?

    init(_ kind: StoreKind) throws {
        self.kind = kind
        database = kind == .postgres ? try TestDatabase.fresh("store") : nil
    }

    /// Whether this kind can run here; records an issue when PostgreSQL is required but absent.
    var available: Bool {
        guard kind == .postgres, database == nil else { return true }
        #expect(!TestDatabase.required, "DISPATCH_POSTGRES_TESTS=required but no DISPATCH_TEST_DATABASE_URL")
        return false
    }

    /// The client's own log (connection retries) stays out of the test output.
    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    func open(leaseSeconds: Int = 15) async throws -> any DispatchStore {
        switch kind {
        case .sqlite:
            return try SQLiteDispatchStore(stateDir: dir.child("state"), inboxDir: dir.child("inbox"), leaseSeconds: leaseSeconds)
        case .postgres:
            let url = try DatabaseURL(try #require(database))
            return try await PostgresDispatchStore.open(
                url: url,
                stateDir: dir.child("state"),
                inboxDir: dir.child("inbox"),
                leaseSeconds: leaseSeconds,
                logger: Self.quietLogger,
                running: dir.keepRunning
            )
        }
    }
}

@Suite struct DispatchStoreTests {

    let owner = RunnerOwner(kind: .run, pid: 1, startTime: 1, bootId: "b", host: "h")

    func request(_ id: String) -> DispatchRequest { DispatchRequest(requestId: id, task: "t", tool: .codex) }

    @Test(arguments: StoreKind.allCases) func insertIsTheDedupeAndWritesTheInbox(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        let request = request("r1")
        let running = DispatchResult(request: request, status: .running)
        guard case .inserted(let record) = try await store.insert(running, request: request, owner: owner) else {
            Issue.record("first insert did not insert")
            return
        }
        #expect(record.owner == owner)
        guard case .existing(let existing) = try await store.insert(DispatchResult(request: request, status: .queued), request: request, owner: nil)
        else {
            Issue.record("second insert inserted")
            return
        }
        #expect(existing.status == .running)
        let inbox = try JSONDecoder().decode(DispatchResult.self, from: Data(contentsOf: URL(fileURLWithPath: store.inboxPath("r1"))))
        #expect(inbox == running)
    }

    @Test(arguments: StoreKind.allCases) func concurrentInsertsOfOneIdInsertOnce(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        let request = request("race")
        let inserted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    if case .inserted = try? await store.insert(DispatchResult(request: request, status: .running), request: request, owner: nil) {
                        return true
                    }
                    return false
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(inserted == 1)
    }

    @Test(arguments: StoreKind.allCases) func terminalResultsAreFinal(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        let request = request("final")
        _ = try await store.insert(DispatchResult(request: request, status: .running), request: request, owner: nil)
        var done = DispatchResult(request: request, status: .completed)
        done.setResultText("ok")
        guard case .updated = try await store.update(done) else {
            Issue.record("update refused")
            return
        }
        var late = done
        late.status = .failed
        late.error = "late"
        guard case .alreadyTerminal(let kept) = try await store.update(late) else {
            Issue.record("terminal replaced")
            return
        }
        #expect(kept.result == done)
        let inbox = try JSONDecoder().decode(DispatchResult.self, from: Data(contentsOf: URL(fileURLWithPath: store.inboxPath("final"))))
        #expect(inbox.status == .completed)
    }

    @Test(arguments: StoreKind.allCases) func listsNewestFirstAndFiltersByStatus(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        for (index, status) in [DispatchStatus.running, .queued, .completed].enumerated() {
            let request = request("l\(index)")
            _ = try await store.insert(DispatchResult(request: request, status: status), request: request, owner: nil)
        }
        #expect(try await store.list().map(\.requestId) == ["l2", "l1", "l0"])
        #expect(try await store.list(status: .queued).map(\.requestId) == ["l1"])
        #expect(try await store.nonTerminal().map(\.requestId) == ["l0", "l1"])
        #expect(try await store.counts()[.completed] == 1)
        #expect(await store.isWritable())
    }

    @Test(arguments: StoreKind.allCases) func reopeningKeepsEverything(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let request = request("persist")
        _ = try await fixture.open().insert(DispatchResult(request: request, status: .running), request: request, owner: owner)
        #expect(try await fixture.open().record("persist")?.owner == owner)
    }
}

@Suite struct DispatchStoreClaimTests {
    @Test(arguments: StoreKind.allCases) func aRowPassesToOneClaimerOnlyAndNeverOutOfATerminalState(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        let first = RunnerOwner(kind: .serve, pid: 1, startTime: 1, bootId: "b", host: "host-a")
        let request = DispatchRequest(requestId: "claimed", task: "t", tool: .codex)
        _ = try await store.insert(DispatchResult(request: request, status: .queued), request: request, owner: first)
        let contenders = (0..<8).map { RunnerOwner(kind: .serve, pid: Int32(100 + $0), startTime: 1, bootId: "b", host: "host-b") }
        let winners = try await withThrowingTaskGroup(of: RunnerOwner?.self) { group in
            for owner in contenders {
                group.addTask { try await store.claim("claimed", from: first, to: owner) != nil ? owner : nil }
            }
            return try await group.reduce(into: [RunnerOwner]()) { if let owner = $1 { $0.append(owner) } }
        }
        #expect(winners.count == 1, "exactly one claimer: \(winners)")
        let stored = try #require(try await store.record("claimed"))
        #expect(stored.status == .running && stored.owner == winners.first)
        #expect(stored.leaseExpiresAt.map { $0 > Date() } == true, "claimed with a fresh lease")
        #expect(try await store.claim("claimed", from: first, to: contenders[0]) == nil, "the old owner is no longer the holder")

        var done = stored.result
        done.status = .cancelled
        try await store.update(done)
        #expect(try await store.claim("claimed", from: winners.first, to: contenders[1]) == nil, "terminal rows are never claimed")
    }
}

@Suite struct DispatchStoreSharedTests {
    func request(_ id: String) -> DispatchRequest { DispatchRequest(requestId: id, task: "t", tool: .codex) }

    @Test(arguments: StoreKind.allCases) func listPagesByCursorAndPrefixIsAKeyRange(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        for id in ["wf-1", "wf-2", "wf%", "wf_x", "other"] {
            _ = try await store.insert(DispatchResult(request: request(id), status: .completed), request: request(id), owner: nil)
        }
        #expect(try await store.list(prefix: "wf-").map(\.requestId) == ["wf-2", "wf-1"])
        #expect(try await store.list(prefix: "wf%").map(\.requestId) == ["wf%"], "no wildcard in an id widens the range")
        let first = try await store.list(limit: 2)
        #expect(first.map(\.requestId) == ["other", "wf_x"])
        let next = try await store.list(before: first.last?.sequence, limit: 2)
        #expect(next.map(\.requestId) == ["wf%", "wf-2"])
    }

    @Test(arguments: StoreKind.allCases) func leasesAreRenewedForTheOwnersLiveRowsOnly(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open(leaseSeconds: 60)
        let owner = RunnerOwner(kind: .serve, pid: 7, startTime: 7, bootId: "b", host: "h")
        for (id, status) in [("live-1", DispatchStatus.running), ("live-2", .queued), ("done", .completed)] {
            _ = try await store.insert(DispatchResult(request: request(id), status: status), request: request(id), owner: owner)
        }
        #expect(try await store.renewLeases(of: owner) == 2)
        let lease = try #require(try await store.record("live-1")?.leaseExpiresAt)
        #expect(lease > Date().addingTimeInterval(50))
    }

    @Test(arguments: StoreKind.allCases) func sandboxesAreSavedReplacedAndFiltered(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        var record = SandboxRecord(
            sandboxId: "s1",
            requestId: "r1",
            state: .running,
            path: "/p",
            repoPath: "/p/repo",
            workDir: "/p/repo",
            baseSha: "abc",
            createdAt: "2026-12-01T00:00:00.000Z",
            updatedAt: "2026-12-01T00:00:00.000Z",
            cleanupAfter: nil
        )
        try await store.saveSandbox(record)
        record.state = .completed
        record.cleanupAfter = "2026-12-02T00:00:00.000Z"
        try await store.saveSandbox(record)
        #expect(try await store.sandbox("s1") == record)
        #expect(try await store.sandboxes(state: .completed).map(\.sandboxId) == ["s1"])
        #expect(try await store.sandboxes(state: .running).isEmpty)
        #expect(try await store.sandboxes(requestId: "r1").count == 1)
    }
}

@Suite struct DispatchStoreQueueTests {
    func request(_ id: String) -> DispatchRequest { DispatchRequest(requestId: id, task: "t", tool: .codex) }

    @Test(arguments: StoreKind.allCases) func queuedRowsAreClaimedOldestFirstEachOnceByConcurrentClaimers(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        for index in 0..<12 {
            _ = try await store.insert(DispatchResult(request: request("q\(index)"), status: .queued), request: request("q\(index)"), owner: nil)
        }
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for claimer in 0..<4 {
                group.addTask {
                    let owner = RunnerOwner(kind: .serve, pid: Int32(100 + claimer), startTime: 1, bootId: "b", host: "h")
                    var mine: [String] = []
                    while let record = try await store.claimNextQueued(owner: owner, startedAt: ISO8601.string(Date())) {
                        #expect(record.status == .running && record.owner == owner)
                        mine.append(record.requestId)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(claimed.sorted() == (0..<12).map { "q\($0)" }.sorted(), "every row once: \(claimed)")
        let nobody = RunnerOwner(kind: .serve, pid: 1, startTime: 1, bootId: "b", host: "h")
        #expect(try await store.claimNextQueued(owner: nobody, startedAt: "x") == nil)
    }

    @Test func aQueuedRowThatCannotBeReadIsPassedOverAndDoesNotStopTheQueue() async throws {
        let fixture = try StoreFixture(.postgres)
        guard fixture.available, let url = fixture.database else { return }
        let store = try await fixture.open()
        for id in ["unreadable", "readable"] {
            _ = try await store.insert(DispatchResult(request: request(id), status: .queued), request: request(id), owner: nil)
        }
        let broken = try TestDatabase.psql(url, "UPDATE dispatch SET request_json = '{not json' WHERE request_id = 'unreadable'")
        #expect(broken.exitCode == 0, "\(broken.stderr)")
        let owner = RunnerOwner(kind: .serve, pid: 5, startTime: 5, bootId: "b", host: "h")
        let claimed = try await store.claimNextQueued(owner: owner, startedAt: ISO8601.string(Date()))
        #expect(claimed?.requestId == "readable", "the queue went on past the unreadable row")
        let status = try TestDatabase.psql(url, "SELECT status FROM dispatch WHERE request_id = 'unreadable'")
        #expect(status.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "queued", "left for a replica that can read it")
        #expect(try await store.claimNextQueued(owner: owner, startedAt: ISO8601.string(Date())) == nil)
    }

    @Test(arguments: StoreKind.allCases) func aQueuedCancelAndAClaimNeverBothWin(_ kind: StoreKind) async throws {
        let fixture = try StoreFixture(kind)
        guard fixture.available else { return }
        let store = try await fixture.open()
        let owner = RunnerOwner(kind: .serve, pid: 9, startTime: 9, bootId: "b", host: "h")
        for index in 0..<10 {
            let id = "race-\(index)"
            _ = try await store.insert(DispatchResult(request: request(id), status: .queued), request: request(id), owner: nil)
            var cancelled = DispatchResult(request: request(id), status: .cancelled)
            cancelled.error = "cancelled by request"
            async let cancel = store.cancelQueued(cancelled)
            async let claim = store.claimNextQueued(owner: owner, startedAt: ISO8601.string(Date()))
            let (cancelWon, claimWon) = (try await cancel != nil, try await claim != nil)
            #expect(cancelWon != claimWon, "exactly one of cancel and claim takes \(id)")
            let stored = try #require(try await store.record(id))
            #expect(stored.status == (cancelWon ? .cancelled : .running))
        }
    }
}

@Suite struct PostgresStoreTests {
    @Test func severalReplicasStartingAtOnceMigrateTheSchemaOnce() async throws {
        let fixture = try StoreFixture(.postgres)
        guard fixture.available else { return }
        let stores = try await withThrowingTaskGroup(of: (any DispatchStore).self) { group in
            for _ in 0..<6 { group.addTask { try await fixture.open() } }
            return try await group.reduce(into: [any DispatchStore]()) { $0.append($1) }
        }
        #expect(stores.count == 6)
        let request = DispatchRequest(requestId: "after-migration", task: "t", tool: .codex)
        _ = try await stores[0].insert(DispatchResult(request: request, status: .running), request: request, owner: nil)
        #expect(try await stores[5].record("after-migration") != nil, "every replica sees the one schema")
    }

    @Test func theURLSaysWhatIsWrongAndNeverShowsThePassword() throws {
        let url = try DatabaseURL("postgres://dispatch:s3cret-pw@db.example:6543/agents?sslmode=require")
        #expect(url.host == "db.example" && url.port == 6543 && url.database == "agents" && url.password == "s3cret-pw")
        #expect(!url.redacted.contains("s3cret") && !"\(url)".contains("s3cret"))
        let fromEnvironment = try DatabaseURL("postgres://dispatch@db/agents", environment: ["PGPASSWORD": "from-env"])
        #expect(fromEnvironment.password == "from-env" && fromEnvironment.sslMode == "require", "TLS required off loopback")
        #expect(try DatabaseURL("postgres://u@127.0.0.1/d").sslMode == "disable")
        #expect(try DatabaseURL("postgres://u:a%252Fb@h/d").password == "a%2Fb", "decoded once")
        for (bad, words) in [
            ("mysql://u@h/d", "must be postgres://"), ("postgres://h/d", "no user"), ("postgres://u@h/", "no database"),
            ("postgres://u:pw@h/d?sslmode=maybe", "sslmode maybe"),
        ] {
            #expect(throws: DispatchStoreError.self) { try DatabaseURL(bad) }
            do { _ = try DatabaseURL(bad) } catch { #expect("\(error)".contains(words) && !"\(error)".contains("pw@"), "\(error)") }
        }
    }

    @Test func anUnreachableDatabaseIsAClearErrorWithoutThePassword() async throws {
        let url = try DatabaseURL("postgres://dispatch:hidden-pw@127.0.0.1:\(freePort())/nowhere?sslmode=disable")
        let dir = TempDir("pg-down")
        do {
            _ = try await PostgresDispatchStore.withStore(
                url: url,
                stateDir: dir.child("state"),
                inboxDir: dir.child("inbox"),
                connectTimeout: .seconds(3),
                logger: StoreFixture.quietLogger
            ) { _ in }
            Issue.record("opened a store on a closed port")
        } catch {
            #expect("\(error)".contains("cannot open the PostgreSQL store at postgres://dispatch@127.0.0.1"), "\(error)")
            #expect(!"\(error)".contains("hidden-pw"))
        }
    }
}
