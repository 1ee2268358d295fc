import DispatchTestSupport
import Foundation
import Testing

@Suite(.serialized) struct ListRouteTests {
    let dir = TempDir("list-route")

    @Test func theListFiltersByPrefixAndPagesWithACursor() async throws {
        let server = ServerProcess(stateDir: dir.child("state"), maxConcurrent: 1)
        try await server.start()
        defer { server.stop() }
        for id in ["wf-1.a", "wf-1.b", "wf-2.a", "other", "wf-1.c"] {
            _ = try await server.dispatch(["requestId": id, "task": "fake:answer=\(id)", "tool": "codex", "model": "m-\(id)"])
            let reply = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000")
            #expect(reply.json?["status"] as? String == "completed", "\(reply.text)")
        }
        let first = try #require(try await server.send(.GET, "/internal/agent-dispatches?prefix=wf-1.&limit=2").json)
        let items = try #require(first["items"] as? [[String: Any]])
        #expect(items.map { $0["requestId"] as? String } == ["wf-1.c", "wf-1.b"], "newest first, only the prefix")
        let item = try #require(items.first)
        for field in [
            "requestId", "status", "tool", "model", "executionMode", "sandboxBackend", "startedAt", "updatedAt", "completedAt",
            "durationMs", "error",
        ] {
            #expect(item.keys.contains(field), "\(field) in \(item)")
        }
        #expect(item["model"] as? String == "m-wf-1.c")
        #expect(item["executionMode"] as? String == "host")
        let next = try #require(first["next"] as? String, "a next cursor while more match")
        let second = try #require(try await server.send(.GET, "/internal/agent-dispatches?prefix=wf-1.&limit=2&before=\(next)").json)
        #expect((second["items"] as? [[String: Any]])?.map { $0["requestId"] as? String } == ["wf-1.a"])
        #expect(second["next"] is NSNull, "no cursor on the last page")
        let all = try #require(try await server.send(.GET, "/internal/agent-dispatches").json?["items"] as? [[String: Any]])
        #expect(all.count == 5)
        let bad = try await server.send(.GET, "/internal/agent-dispatches?prefix=%25")
        #expect(bad.status == 400 && bad.json?["field"] as? String == "prefix", "\(bad.text)")
        #expect(try await server.send(.GET, "/internal/agent-dispatches?before=x").status == 400)
    }
}
