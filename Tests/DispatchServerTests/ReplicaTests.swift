import AgentProcess
import DispatchCore
import DispatchStore
import DispatchTestSupport
import Foundation
import Testing

/// Several `dispatch serve` on one PostgreSQL (CONTRACT §8), against the throwaway server `make test` starts.
@Suite(.serialized) struct ReplicaTests {
    let dir = TempDir("replicas")

    /// A result's timestamp.
    static func date(_ value: Any?) -> Date? { (value as? String).flatMap { ISO8601.date($0) } }

    /// A fresh database, or `nil` (with an issue when PostgreSQL is required) when no test server runs.
    func database() throws -> String? {
        let url = try TestDatabase.fresh("replica")
        if url == nil { #expect(!TestDatabase.required, "DISPATCH_POSTGRES_TESTS=required but no DISPATCH_TEST_DATABASE_URL") }
        return url
    }

    @Test func aServeOnPostgresSaysSoAndRefusesToStartWithoutAConfiguredToken() async throws {
        guard let url = try database() else { return }
        let tokenless = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", dir.child("tokenless")],
            environment: ["DISPATCH_DATABASE_URL": url, "DISPATCH_TOKEN": ""]
        )
        #expect(tokenless.exitCode == 2)
        #expect(tokenless.stderr.contains("the admin token must be configured, the same on every replica"), "\(tokenless.stderr)")
        let badURL = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", dir.child("bad-url")],
            environment: ["DISPATCH_DATABASE_URL": "postgres://nobody@/x", "DISPATCH_TOKEN": "test-token-0123456789abcdef0123456789abcdef"]
        )
        #expect(badURL.exitCode == 2, "\(badURL.stderr)")
        #expect(badURL.stderr.contains("DISPATCH_DATABASE_URL has no host"), "\(badURL.stderr)")

        let server = ServerProcess(stateDir: dir.child("one"), environment: ["DISPATCH_DATABASE_URL": url])
        try await server.start()
        defer { server.stop() }
        #expect(try await server.send(.GET, "/").json?["store"] as? String == "postgres")
        _ = try await server.dispatch(["requestId": "on-postgres", "task": "fake:answer=stored-in-postgres", "tool": "codex"])
        let done = try await server.send(.GET, "/internal/agent-await/on-postgres?timeoutMs=30000")
        #expect((done.json?["result"] as? [String: Any])?["result"] as? String == "stored-in-postgres", "\(done.text)")
        #expect(try await server.send(.GET, "/readyz", token: .some(nil)).status == 200, "readiness includes the database")
    }

    @Test func twoReplicasTurnTwoHundredPostsOfTwentyIdsIntoTwentyExecutions() async throws {
        guard let url = try database() else { return }
        let count = dir.child("executions")
        let replicas = [
            ServerProcess(stateDir: dir.child("replica-a"), maxConcurrent: 8, environment: ["DISPATCH_DATABASE_URL": url]),
            ServerProcess(stateDir: dir.child("replica-b"), maxConcurrent: 8, environment: ["DISPATCH_DATABASE_URL": url]),
        ]
        for replica in replicas { try await replica.start() }
        defer { for replica in replicas { replica.stop() } }
        let duplicates = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<200 {
                let replica = replicas[index % 2]
                let id = "dedupe-\(index % 20)"
                group.addTask {
                    let reply = try await replica.dispatch(["requestId": id, "task": "fake:count=\(count) fake:answer=\(id)", "tool": "codex"])
                    #expect([200, 202].contains(reply.status), "\(reply.text)")
                    return reply.json?["duplicate"] as? Bool == true
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(duplicates == 180, "every POST but the first of each id is a duplicate")
        for index in 0..<20 {
            // Either replica answers for a request the other runs: the store is the truth.
            let reply = try await replicas[(index + 1) % 2].send(.GET, "/internal/agent-await/dedupe-\(index)?timeoutMs=30000")
            #expect((reply.json?["result"] as? [String: Any])?["status"] as? String == "completed", "\(reply.text)")
        }
        #expect(LogFile.read(count).split(separator: "\n").count == 20, "exactly one execution per id")
        // Each replica lists the requests of both (some ran on one, some on the other).
        for replica in replicas {
            let list = try await replica.send(.GET, "/internal/agent-dispatches?prefix=dedupe-&limit=50")
            let ids = Set(((list.json?["items"] as? [[String: Any]]) ?? []).compactMap { $0["requestId"] as? String })
            #expect(ids == Set((0..<20).map { "dedupe-\($0)" }), "\(list.text.prefix(300))")
        }
        let inboxes = replicas.map { replica in
            Set(((try? FileManager.default.contentsOfDirectory(atPath: "\(replica.stateDir)/inbox")) ?? []).filter { $0.hasPrefix("dedupe-") })
        }
        #expect(inboxes[0].union(inboxes[1]).count == 20, "each result is in the inbox of the replica that finished it")
    }

    @Test func anAwaitOnOneReplicaIsWokenByAResultCommittedOnAnotherAndSurvivesADroppedListener() async throws {
        guard let url = try database() else { return }
        let owner = ServerProcess(stateDir: dir.child("wake-a"), environment: ["DISPATCH_DATABASE_URL": url])
        let waiter = ServerProcess(stateDir: dir.child("wake-b"), environment: ["DISPATCH_DATABASE_URL": url])
        for replica in [owner, waiter] { try await replica.start() }
        defer { for replica in [owner, waiter] { replica.stop() } }
        var lags: [Double] = []
        for index in 0..<5 {
            let id = "wake-\(index)"
            _ = try await owner.dispatch(["requestId": id, "task": "fake:sleep=0.4 fake:answer=woken", "tool": "codex"])
            let reply = try await waiter.send(.GET, "/internal/agent-await/\(id)?timeoutMs=10000")
            let received = Date()
            let result = try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
            let completed = try #require(Self.date(result["completedAt"]))
            lags.append(received.timeIntervalSince(completed))
        }
        // Re-reading once a second would be 0.5 s late on average: woken by the commit, it is milliseconds.
        #expect(lags.max() ?? 1 < 0.4, "await wake lags across replicas: \(lags)")

        // The waiter's notification connection drops while the result is committed: it listens again and re-reads.
        _ = try await owner.dispatch(["requestId": "wake-dropped", "task": "fake:sleep=0.5 fake:answer=after-the-drop", "tool": "codex"])
        async let reply = waiter.send(.GET, "/internal/agent-await/wake-dropped?timeoutMs=15000")
        try await Task.sleep(for: .milliseconds(100))
        let dropped = try TestDatabase.psql(
            url,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        )
        #expect(
            dropped.exitCode == 0 && (Int(dropped.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 1,
            "\(dropped.stdout)\(dropped.stderr)"
        )
        let clock = ContinuousClock()
        let start = clock.now
        let answer = try await reply
        #expect((answer.json?["result"] as? [String: Any])?["result"] as? String == "after-the-drop", "\(answer.text)")
        #expect(clock.now - start < .seconds(6), "woken after the listener came back, not at the await's timeout")
    }

    @Test func aReplicaWithAFreeSlotRunsWhatAnotherQueuedFirstInFirstOutAndOnce() async throws {
        guard let url = try database() else { return }
        let count = dir.child("queue-count")
        let busy = ServerProcess(stateDir: dir.child("queue-a"), maxConcurrent: 1, environment: ["DISPATCH_DATABASE_URL": url])
        let idle = ServerProcess(stateDir: dir.child("queue-b"), maxConcurrent: 1, environment: ["DISPATCH_DATABASE_URL": url])
        for replica in [busy, idle] { try await replica.start() }
        defer { for replica in [busy, idle] { replica.stop() } }
        _ = try await busy.dispatch(["requestId": "queue-0", "task": "fake:sleep=3 fake:count=\(count) fake:answer=first", "tool": "codex"])
        for index in 1...4 {
            let reply = try await busy.dispatch([
                "requestId": "queue-\(index)", "task": "fake:sleep=0.2 fake:count=\(count) fake:answer=q", "tool": "codex",
            ])
            #expect(reply.json?["status"] as? String == "queued", "the busy replica queues it: \(reply.text)")
        }
        var started: [Date] = []
        for index in 1...4 {
            let reply = try await idle.send(.GET, "/internal/agent-await/queue-\(index)?timeoutMs=20000")
            let result = try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
            #expect(result["status"] as? String == "completed", "\(result)")
            started.append(try #require(Self.date(result["startedAt"])))
            #expect(FileManager.default.fileExists(atPath: "\(idle.stateDir)/inbox/queue-\(index).json"), "run (and written) by the idle replica")
        }
        #expect(started == started.sorted(), "first in, first out: \(started)")
        let first = try await busy.send(.GET, "/internal/agent-await/queue-0?timeoutMs=20000")
        let firstStart = try #require(Self.date((first.json?["result"] as? [String: Any])?["completedAt"]))
        #expect(started.last! < firstStart, "the queue ran beside the busy replica's run, not after it")
        #expect(LogFile.read(count).split(separator: "\n").count == 5, "each exactly once")
        // Cancel of a request still queued, from either replica.
        _ = try await busy.dispatch(["requestId": "queue-hold", "task": "fake:sleep=3 fake:answer=hold", "tool": "codex"])
        _ = try await idle.dispatch(["requestId": "queue-hold-2", "task": "fake:sleep=3 fake:answer=hold", "tool": "codex"])
        _ = try await busy.dispatch(["requestId": "queue-cancel", "task": "fake:answer=never", "tool": "codex"])
        let cancelled = try await idle.send(.POST, "/internal/agent-cancel/queue-cancel")
        #expect((cancelled.json?["result"] as? [String: Any])?["status"] as? String == "cancelled", "\(cancelled.text)")
    }

    @Test func aCancelOnOneReplicaStopsARunOnAnother() async throws {
        guard let url = try database() else { return }
        let owner = ServerProcess(stateDir: dir.child("cancel-a"), environment: ["DISPATCH_DATABASE_URL": url])
        let other = ServerProcess(stateDir: dir.child("cancel-b"), environment: ["DISPATCH_DATABASE_URL": url])
        for replica in [owner, other] { try await replica.start() }
        defer { for replica in [owner, other] { replica.stop() } }
        _ = try await owner.dispatch(["requestId": "cancel-far", "task": "fake:hang", "tool": "codex"])
        #expect(await eventually { !survivors(of: "cancel-far").isEmpty })
        let clock = ContinuousClock()
        let start = clock.now
        let reply = try await other.send(.POST, "/internal/agent-cancel/cancel-far")
        #expect(reply.status == 200, "\(reply.text)")
        let result = try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
        #expect(result["status"] as? String == "cancelled" && result["error"] as? String == "cancelled by request", "\(result)")
        #expect(clock.now - start < .seconds(5), "the owner ended it within its grace")
        #expect(await eventually { survivors(of: "cancel-far").isEmpty }, "the agent on the other replica was killed")
        #expect(try await other.send(.POST, "/internal/agent-cancel/cancel-far").status == 409)
    }

    @Test func aReplicaRefusesAnEmptyDatabaseWhileItsStateDirHoldsUnfinishedSQLiteRows() async throws {
        guard let url = try database() else { return }
        let state = dir.child("leftover")
        let local = try SQLiteDispatchStore(stateDir: state, inboxDir: "\(state)/inbox")
        let request = DispatchRequest(requestId: "not-forgotten", task: "t", tool: .codex)
        _ = try await local.insert(DispatchResult(request: request, status: .queued), request: request, owner: nil)
        let refused = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", state],
            environment: ["DISPATCH_DATABASE_URL": url, "DISPATCH_TOKEN": "test-token-0123456789abcdef0123456789abcdef"]
        )
        #expect(refused.exitCode == 2, "\(refused.stderr)")
        #expect(
            refused.stderr.contains("holds 1 unfinished dispatches in SQLite that the PostgreSQL store does not have")
                && refused.stderr.contains("dispatch store import")
        )

        // Imported, nothing is forgotten: the queued request runs on the PostgreSQL replica.
        let environment = ["DISPATCH_DATABASE_URL": url, "DISPATCH_TOKEN": "test-token-0123456789abcdef0123456789abcdef"]
        let done = DispatchRequest(requestId: "finished-before", task: "t", tool: .codex)
        var finished = DispatchResult(request: done, status: .running)
        _ = try await local.insert(finished, request: done, owner: nil)
        finished.status = .completed
        finished.setResultText("kept")
        _ = try await local.update(finished)
        let imported = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["store", "import", "--from", state, "--state-dir", state],
            environment: environment
        )
        #expect(imported.exitCode == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("\"imported\":2"), "\(imported.stdout)")
        let again = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["store", "import", "--from", state, "--state-dir", state],
            environment: environment
        )
        #expect(again.stdout.contains("\"alreadyPresent\":2") && again.stdout.contains("\"imported\":0"), "\(again.stdout)")
        let server = ServerProcess(stateDir: state, environment: ["DISPATCH_DATABASE_URL": url])
        try await server.start()
        defer { server.stop() }
        let kept = try await server.send(.GET, "/internal/agent-result/finished-before")
        #expect((kept.json?["result"] as? [String: Any])?["result"] as? String == "kept", "\(kept.text)")
        let ran = try await server.send(.GET, "/internal/agent-await/not-forgotten?timeoutMs=30000")
        #expect((ran.json?["result"] as? [String: Any])?["status"] as? String == "completed", "\(ran.text)")
    }
}
