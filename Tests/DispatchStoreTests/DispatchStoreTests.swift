import DispatchCore
import DispatchStore
import DispatchTestSupport
import Foundation
import Testing

@Suite struct DispatchStoreTests {
    let dir = TempDir("store")

    func store() throws -> any DispatchStore {
        try SQLiteDispatchStore(stateDir: dir.child("state"), inboxDir: dir.child("inbox"))
    }

    let owner = RunnerOwner(kind: .run, pid: 1, startTime: 1, bootId: "b", host: "h")

    func request(_ id: String) -> DispatchRequest { DispatchRequest(requestId: id, task: "t", tool: .codex) }

    @Test func insertIsTheDedupeAndWritesTheInbox() async throws {
        let store = try store()
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

    @Test func concurrentInsertsOfOneIdInsertOnce() async throws {
        let store = try store()
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

    @Test func terminalResultsAreFinal() async throws {
        let store = try store()
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

    @Test func listsNewestFirstAndFiltersByStatus() async throws {
        let store = try store()
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

    @Test func reopeningKeepsEverything() async throws {
        let request = request("persist")
        _ = try await store().insert(DispatchResult(request: request, status: .running), request: request, owner: owner)
        #expect(try await store().record("persist")?.owner == owner)
    }
}

@Suite struct DispatchStoreClaimTests {
    let dir = TempDir("store-claim")

    @Test func aRowPassesToOneClaimerOnlyAndNeverOutOfATerminalState() async throws {
        let store = try SQLiteDispatchStore(stateDir: dir.child("state"), inboxDir: dir.child("inbox"))
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
