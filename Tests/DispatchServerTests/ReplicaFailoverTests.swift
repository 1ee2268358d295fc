import AgentProcess
import DispatchCore
import DispatchTestSupport
import Foundation
import Testing

/// Replicas on other machines (CONTRACT §8): each replica here runs with its own hostname and its state dir on a
/// tmpfs of its own mount namespace, so that its peers see neither its processes' host nor its files.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root for the other machine's namespaces"))
struct ReplicaFailoverTests {
    let dir = TempDir("replica-failover")

    func database() throws -> String? {
        let url = try TestDatabase.fresh("failover")
        if url == nil { #expect(!TestDatabase.required, "DISPATCH_POSTGRES_TESTS=required but no DISPATCH_TEST_DATABASE_URL") }
        return url
    }

    /// Replica `name` on a machine of its own.
    /// Replica `name` on a machine of its own; with `port`, listening there and saying so (`DISPATCH_REPLICA_URL`:
    /// a loopback listener advertises no URL of its own).
    func replica(_ name: String, url: String, maxConcurrent: Int = 2, lease: Int = 2, port: Int = 0) -> ServerProcess {
        let state = dir.child(name)
        var environment = ["DISPATCH_DATABASE_URL": url, "DISPATCH_REPLICA_NAME": name, "DISPATCH_LEASE_SECONDS": "\(lease)"]
        if port != 0 { environment["DISPATCH_REPLICA_URL"] = "http://127.0.0.1:\(port)/" }
        return ServerProcess(
            stateDir: state,
            maxConcurrent: maxConcurrent,
            environment: environment,
            port: port,
            launcher: ServerProcess.onAnotherMachine("\(name)-host", stateDir: state)
        )
    }

    @Test func theLogsAndPatchOfARunOnAnotherReplicaAreServedByEither() async throws {
        guard let url = try database() else { return }
        let repo = dir.child("repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let holder = replica("replica-holder", url: url, port: Int.random(in: 20_000..<60_000))
        let other = replica("replica-other", url: url)
        for server in [holder, other] { try await server.start() }
        defer { other.stop() }
        _ = try await holder.dispatch([
            "requestId": "far-files", "executionMode": "sandbox", "cwd": repo, "tool": "codex",
            "task": "fake:stderr=a-line-only-the-holder-has fake:write=changed.txt:the-new-content fake:answer=ok",
        ])
        let done = try await other.send(.GET, "/internal/agent-await/far-files?timeoutMs=30000")
        #expect((done.json?["result"] as? [String: Any])?["status"] as? String == "completed", "\(done.text)")
        let log = try await other.send(.GET, "/internal/agent-logs/far-files?stream=stderr")
        #expect(log.status == 200 && log.text.contains("a-line-only-the-holder-has"), "the log comes from the replica that has it: \(log.text)")
        let patch = try await other.send(.GET, "/internal/agent-patch/far-files")
        #expect(patch.status == 200 && patch.text.contains("+the-new-content"), "\(patch.text)")
        // A proxied request is answered from the replica's own files, never passed on (no loops between replicas).
        let local = try await other.send(.GET, "/internal/agent-logs/far-files?stream=stderr", headers: [("X-Dispatch-Proxied", "1")])
        #expect(local.status == 200 && !local.text.contains("a-line-only-the-holder-has"), "\(local.text)")
        // A proxied request meant for another replica (a URL that reached the wrong one) is refused, not answered.
        let misdirected = try await other.send(.GET, "/internal/agent-logs/far-files", headers: [("X-Dispatch-Proxied", "replica-holder")])
        #expect(misdirected.status == 421)
        // With the holder gone, the other answers from what it has once the holder does not (3 s).
        _ = holder.stop(SIGKILL)
        let clock = ContinuousClock()
        let start = clock.now
        let gone = try await other.send(.GET, "/internal/agent-logs/far-files?stream=stderr")
        #expect(gone.status == 200 && clock.now - start < .seconds(5), "\(gone.status) after \(clock.now - start)")
    }

    @Test func aKilledReplicasQueueRunsElsewhereOnceAndItsRunEndsLostAfterItsMonitorsWindow() async throws {
        guard let url = try database() else { return }
        let count = dir.child("count")
        let doomed = replica("replica-doomed", url: url, maxConcurrent: 1)
        try await doomed.start()
        _ = try await doomed.dispatch(["requestId": "doomed-run", "task": "fake:hang", "tool": "codex"])
        #expect(await eventually { !survivors(of: "doomed-run").isEmpty })
        for index in 1...2 {
            let reply = try await doomed.dispatch([
                "requestId": "doomed-q\(index)", "task": "fake:count=\(count) fake:answer=q\(index)", "tool": "codex",
            ])
            #expect(reply.json?["status"] as? String == "queued", "\(reply.text)")
        }
        _ = doomed.stop(SIGKILL)
        let clock = ContinuousClock()
        let killed = clock.now
        let heir = replica("replica-heir", url: url)
        try await heir.start()
        defer { heir.stop() }
        for index in 1...2 {
            let reply = try await heir.send(.GET, "/internal/agent-await/doomed-q\(index)?timeoutMs=20000")
            #expect((reply.json?["result"] as? [String: Any])?["result"] as? String == "q\(index)", "\(reply.text)")
        }
        #expect(LogFile.read(count).split(separator: "\n").count == 2, "each queued request ran exactly once")
        // Its monitor (on the dead replica's machine, out of the heir's sight) waits one lease for a serve there:
        // the heir must not end the run before that window is over.
        try await Task.sleep(until: killed + .seconds(4))
        let early = try await heir.send(.GET, "/internal/agent-result/doomed-run")
        #expect(early.json?["status"] as? String == "running", "not ended before the monitor's window: \(early.text)")
        let ended = try await heir.send(.GET, "/internal/agent-await/doomed-run?timeoutMs=15000")
        let result = try #require(ended.json?["result"] as? [String: Any], "\(ended.text)")
        #expect(result["status"] as? String == "failed")
        #expect(
            (result["error"] as? String)?.hasPrefix("runner lost: replica replica-doomed stopped renewing its lease") == true,
            "\(result["error"] ?? "")"
        )
        #expect(clock.now - killed < .seconds(12), "ended within two leases, the grace and a few seconds: \(clock.now - killed)")
        #expect(await eventually(timeout: .seconds(5)) { survivors(of: "doomed-run").isEmpty }, "its monitor ended the agent")
    }
}
