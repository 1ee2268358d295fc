import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// One run's fork bomb or memory hog takes neither `serve` nor another run down (CONTRACT §7, resource limits).
@Suite(.serialized) struct ResourceLimitsTests {
    let dir = TempDir("limits")

    /// The runner's per-run cgroups, when this machine lets it make them (cgroup v1 `pids` and `memory` here).
    var place: CgroupPlace? { CgroupPlace.detect() }

    /// A serve with `environment`, a neighbour run beside the hostile one, and both results.
    func hostileBesideNeighbour(
        _ name: String,
        task: String,
        environment: [String: String]
    ) async throws -> (hostile: [String: Any], neighbour: [String: Any]) {
        let server = ServerProcess(stateDir: dir.child(name), environment: environment)
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch(["requestId": "\(name)-hostile", "task": task, "tool": "codex"])
        _ = try await server.dispatch(["requestId": "\(name)-neighbour", "task": "fake:sleep=0.5 fake:answer=unharmed", "tool": "codex"])
        let neighbour = try await server.send(.GET, "/internal/agent-await/\(name)-neighbour?timeoutMs=30000")
        let hostile = try await server.send(.GET, "/internal/agent-await/\(name)-hostile?timeoutMs=30000")
        #expect(try await server.send(.GET, "/healthz", token: .some(nil)).status == 200, "serve is up")
        return (
            try #require(hostile.json?["result"] as? [String: Any], "\(hostile.text)"),
            try #require(neighbour.json?["result"] as? [String: Any], "\(neighbour.text)")
        )
    }

    @Test func getRootReportsHowRunsAreLimited() async throws {
        let server = ServerProcess(stateDir: dir.child("info"))
        try await server.start()
        defer { server.stop() }
        let info = try await server.send(.GET, "/")
        #expect(info.json?["limits"] as? String == (place == nil ? "rlimit" : "cgroup-v1"), "\(info.text)")
        let unlimited = ServerProcess(
            stateDir: dir.child("info-off"),
            environment: ["DISPATCH_MAX_MEMORY_BYTES": "0", "DISPATCH_MAX_PROCESSES": "0"]
        )
        try await unlimited.start()
        defer { unlimited.stop() }
        #expect(try await unlimited.send(.GET, "/").json?["limits"] as? String == "none")
    }

    @Test func aForkBombIsHeldToItsProcessLimit() async throws {
        guard place != nil else { return }
        let (hostile, neighbour) = try await hostileBesideNeighbour(
            "forkbomb",
            task: "fake:forkbomb=400 fake:answer=bombed",
            environment: ["DISPATCH_MAX_PROCESSES": "40"]
        )
        #expect(neighbour["status"] as? String == "completed" && neighbour["result"] as? String == "unharmed", "\(neighbour)")
        let stderr = try #require((hostile["logs"] as? [String: Any])?["stderr"] as? String)
        let forked = stderr.split(separator: "\n").first { $0.hasPrefix("forkbomb: forked") }.flatMap { Int($0.split(separator: " ")[2]) }
        let made = try #require(forked, "\(stderr)")
        #expect(made < 40, "at most the limit (the monitor, bwrap and the agent count too): \(made)")
        #expect(await eventually(timeout: .seconds(10)) { survivors(of: "forkbomb-hostile").isEmpty }, "its children were ended")
        #expect(await eventually(timeout: .seconds(10)) { liveRunCgroups().isEmpty }, "no run cgroup holds a process")
    }

    @Test func aMemoryHogIsKilledAloneAndTheRunFails() async throws {
        let (hostile, neighbour) = try await hostileBesideNeighbour(
            "hog",
            task: "fake:hog=600000000 fake:answer=hogged",
            environment: ["DISPATCH_MAX_MEMORY_BYTES": "200000000"]
        )
        #expect(neighbour["status"] as? String == "completed" && neighbour["result"] as? String == "unharmed", "\(neighbour)")
        #expect(hostile["status"] as? String == "failed", "\(hostile)")
        let error = hostile["error"] as? String ?? ""
        // In a cgroup the kernel's OOM killer ends it, and the error says so; under RLIMIT_DATA the allocation is
        // refused (exit 3).
        let expected = place == nil ? "exit 3" : "codex ran out of memory (the run's limit is 200000000 bytes) and was killed"
        #expect(error.contains(expected), "\(error)")
    }

    /// Run cgroups that still hold a live process.
    func liveRunCgroups() -> [String] {
        guard let base = place?.bases.first else { return [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return names.filter { name in
            guard name.hasPrefix("run-"), let procs = try? String(contentsOfFile: "\(base)/\(name)/cgroup.procs", encoding: .utf8) else {
                return false
            }
            return !procs.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
    }
}
