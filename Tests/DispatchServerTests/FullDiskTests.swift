import DispatchTestSupport
import Foundation
import Testing

/// A full disk under `serve` (CONTRACT §7, "Resources"): the agent fills the state dir's filesystem after its answer.
/// The terminal result the store will not take is held and written again, `/readyz` says 503 meanwhile, and once
/// space returns the request ends with its real result within seconds. Nothing is lost.
@Suite(.serialized) struct FullDiskTests {
    let dir = TempDir("full-disk")

    @Test(.enabled(if: geteuid() == 0, "mounts a small tmpfs")) func aResultTheFullDiskRefusedIsHeldUntilItCommits() async throws {
        let disk = dir.child("small-disk")
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        let mounted = try CommandRunner.run("/bin/mount", ["-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", disk])
        try #require(mounted.exitCode == 0, "\(mounted.stderr)")
        defer { _ = try? CommandRunner.run("/bin/umount", ["-l", disk]) }
        let work = "\(disk)/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        // Held once the ordinary retries (1 s here) are over.
        let server = ServerProcess(stateDir: "\(disk)/state", environment: ["DISPATCH_STORE_RETRY_SECONDS": "1"])
        try await server.start()
        defer { server.stop() }
        #expect(try await server.send(.GET, "/readyz").status == 200)

        let fill = "\(work)/fill"
        let accepted = try await server.dispatch([
            "requestId": "full-1", "task": "fake:answer=held-then-stored fake:fill-after=\(fill)", "tool": "codex", "cwd": work,
        ])
        #expect(accepted.status == 202, "\(accepted.text)")
        var full: ServerProcess.Reply?
        for _ in 0..<600 {
            let ready = try await server.send(.GET, "/readyz")
            if ready.status == 503, ready.json?["held"] as? Int == 1 {
                full = ready
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(full != nil, "/readyz never said 503 with the result held")
        let during = try await server.send(.GET, "/internal/agent-result/full-1")
        #expect(during.json?["status"] as? String == "running", "held, not lost nor failed: \(during.text)")

        try FileManager.default.removeItem(atPath: fill)
        let done = try await server.send(.GET, "/internal/agent-await/full-1?timeoutMs=15000")
        let result = done.json?["result"] as? [String: Any]
        #expect(result?["status"] as? String == "completed" && result?["result"] as? String == "held-then-stored", "\(done.text)")
        #expect(try await server.send(.GET, "/readyz").status == 200, "ready again once the result is stored")
        let inbox = try? String(contentsOfFile: "\(disk)/state/inbox/full-1.json", encoding: .utf8)
        #expect(inbox?.contains("\"completed\"") == true, "the inbox file holds the result: \(inbox ?? "none")")
    }
}
