import DispatchCore
import DispatchStore
import DispatchTestSupport
import Foundation
import Sandbox
import Testing

/// The warm pool (`DISPATCH_WARM_SANDBOXES`) through a real `serve`: a sandbox request at the pool's commit takes a
/// ready checkout, which is indistinguishable from a fresh one; the pool refills, follows the latest commit, is
/// known to the registry and the janitor, and a `serve` killed while holding one leaves nothing a new one keeps.
@Suite(.serialized) struct WarmPoolTests {
    let dir = TempDir("warm-pool")

    /// The pool's ready entries (whole ones: not `.partial`).
    static func ready(_ state: String) -> [String] {
        let root = "\(state)/sandboxes/.warm"
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasSuffix(".partial") }.sorted()
    }

    func git(_ arguments: [String], in path: String) throws -> String {
        try GitFixture.git(arguments, in: path).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// What a checkout looks like to git: the index's tree, status, HEAD, branches, and the files' hash.
    func looks(_ repo: String) throws -> [String] {
        [
            try git(["write-tree"], in: repo), try git(["status", "--porcelain", "--untracked-files=all"], in: repo),
            try git(["rev-parse", "HEAD"], in: repo), "\(try git(["branch", "--list"], in: repo).split(separator: "\n").count) branch(es)",
            try GitFixture.workingTreeHash(repo),
        ]
    }

    func sandboxRequest(_ id: String, repo: String, base: String) -> [String: Any] {
        ["requestId": id, "executionMode": "sandbox", "cwd": repo, "baseSha": base, "tool": "codex", "task": "fake:answer=ok"]
    }

    func finished(_ server: ServerProcess, _ id: String) async throws -> [String: Any] {
        let reply = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000")
        let result = try #require(reply.json?["result"] as? [String: Any], "\(reply.text)")
        #expect(result["status"] as? String == "completed", "\(result)")
        return result
    }

    static func inode(_ path: String) -> UInt64 {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : 0
    }

    static func repoPath(_ result: [String: Any]) throws -> String {
        try #require((result["localSandbox"] as? [String: Any])?["repoPath"] as? String)
    }

    @Test func aRequestAtThePoolsCommitTakesAReadyCheckoutIndistinguishableFromAFreshOne() async throws {
        let repo = dir.child("repo")
        let first = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n", "dir/b.txt": "beta\n", "crlf.txt": "one\r\ntwo\r\n"])
        try GitFixture.write(["a.txt": "alpha 2\n"], in: repo)
        _ = try GitFixture.git(["commit", "-qam", "second"], in: repo)
        let second = try GitFixture.head(repo)
        let state = dir.child("state")
        let server = ServerProcess(stateDir: state, environment: ["DISPATCH_WARM_SANDBOXES": "2"])
        try await server.start()
        defer { server.stop() }
        // The first request at a commit checks out afresh; the pool then makes two of that commit.
        _ = try await server.dispatch(sandboxRequest("fresh", repo: repo, base: first))
        let fresh = try await finished(server, "fresh")
        #expect(await eventually { Self.ready(state).count == 2 }, "the pool fills to its size: \(Self.ready(state))")
        let before = Self.ready(state)
        let inodes = Set(before.map { Self.inode("\(state)/sandboxes/.warm/\($0)/repo/a.txt") })
        _ = try await server.dispatch(sandboxRequest("claimed", repo: repo, base: first))
        let claimed = try await finished(server, "claimed")
        #expect(inodes.contains(Self.inode("\(try Self.repoPath(claimed))/a.txt")), "the sandbox is one of the ready checkouts, moved")
        #expect(!inodes.contains(Self.inode("\(try Self.repoPath(fresh))/a.txt")))
        #expect(try looks(Self.repoPath(claimed)) == looks(Self.repoPath(fresh)), "the claimed checkout looks as a fresh one does")
        #expect(
            try git(["symbolic-ref", "HEAD"], in: Self.repoPath(claimed)).hasSuffix(
                (claimed["localSandbox"] as? [String: Any])?["sandboxId"] as? String ?? "?"
            )
        )
        #expect(await eventually { Self.ready(state).count == 2 && Set(Self.ready(state)) != Set(before) }, "and the pool refills")

        // The registry knows the ready ones; the janitor's --all-terminal leaves them.
        let listed = try CommandRunner.run(TestPaths.dispatchBinary, ["sandboxes", "list", "--state", "warm", "--json", "--state-dir", state])
        #expect(listed.stdout.components(separatedBy: "\"warm\"").count - 1 == 2, "\(listed.stdout)")

        // A request at another commit: that commit is the one kept now; the older checkouts go.
        let old = Set(Self.ready(state))
        _ = try await server.dispatch(sandboxRequest("newer", repo: repo, base: second))
        _ = try await finished(server, "newer")
        #expect(await eventually { Self.ready(state).count == 2 && Set(Self.ready(state)).isDisjoint(with: old) }, "\(Self.ready(state))")
        for entry in Self.ready(state) {
            #expect(try git(["rev-parse", "HEAD"], in: "\(state)/sandboxes/.warm/\(entry)/repo") == second)
        }
    }

    @Test func aServeKilledWithAFullPoolLeavesNothingTheNextOneKeeps() async throws {
        let repo = dir.child("repo-killed")
        let base = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let state = dir.child("state-killed")
        let first = ServerProcess(stateDir: state, environment: ["DISPATCH_WARM_SANDBOXES": "3"])
        try await first.start()
        _ = try await first.dispatch(sandboxRequest("before-kill", repo: repo, base: base))
        _ = try await finished(first, "before-kill")
        #expect(await eventually { Self.ready(state).count >= 1 })
        let left = Set(Self.ready(state))
        first.stop(SIGKILL)
        let second = ServerProcess(stateDir: state, environment: ["DISPATCH_WARM_SANDBOXES": "3"])
        try await second.start()
        defer { second.stop() }
        #expect(Set(Self.ready(state)).isDisjoint(with: left), "the new serve removed what the killed one left")
        // Its rows are reconciled (their directories are gone) by the janitor's sweep.
        let swept = try CommandRunner.run(TestPaths.dispatchBinary, ["sandboxes", "janitor", "--state-dir", state])
        #expect(swept.exitCode == 0, "\(swept.stderr)")
        let listed = try CommandRunner.run(TestPaths.dispatchBinary, ["sandboxes", "list", "--state", "warm", "--json", "--state-dir", state])
        for entry in left { #expect(!listed.stdout.contains(entry), "\(entry) is no longer listed as warm") }
        // And a request still gets its sandbox.
        _ = try await second.dispatch(sandboxRequest("after-kill", repo: repo, base: base))
        _ = try await finished(second, "after-kill")
    }
}
