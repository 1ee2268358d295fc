import AgentProcess
import DispatchCore
import DispatchStore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Git
import Logging
import Sandbox
import Synchronization
import Testing

@Suite(.serialized) struct LocalSandboxTests {
    let fixture: EngineFixture
    let repo: String
    let base: String

    init() throws {
        fixture = try EngineFixture()
        repo = fixture.dir.child("host")
        base = try GitFixture.makeRepo(
            at: repo,
            files: [
                "a.txt": "alpha\n", "b.txt": "bravo\n", "c.txt": "charlie\n", "script.sh": "echo hi\n", "sub/dir/d.txt": "delta\n",
                ".gitignore": "*.log\n",
            ]
        )
    }

    func sandboxRequest(_ task: String, cwd: String? = nil, baseSha: String? = nil, timeout: Double = 60) -> DispatchRequest {
        var request = fixture.request(.codex, task, timeout: timeout)
        request.executionMode = .sandbox
        request.sandboxBackend = .local
        request.cwd = cwd ?? repo
        request.baseSha = baseSha
        return request
    }

    /// Everything about the host repo that a sandbox dispatch must leave byte-identical.
    func hostSnapshot() throws -> [String] {
        [
            try GitFixture.git(["status", "--porcelain=v1", "--untracked-files=all", "--ignored"], in: repo),
            try GitFixture.git(["for-each-ref", "--format=%(refname) %(objectname)"], in: repo),
            try GitFixture.git(["worktree", "list", "--porcelain"], in: repo),
            try GitFixture.git(["ls-files", "--stage", "--debug"], in: repo),
            // The binary index byte for byte (a lossy UTF-8 decode would hide changes).
            try Data(contentsOf: URL(fileURLWithPath: "\(repo)/.git/index")).base64EncodedString(),
            try GitFixture.git(["stash", "list"], in: repo),
        ]
    }

    @Test func hostCheckoutIsUntouchedAndItsDirtStaysOut() async throws {
        try GitFixture.git(["worktree", "add", "-q", "--detach", fixture.dir.child("extra-worktree")], in: repo)
        try GitFixture.write(["a.txt": "staged change\n"], in: repo)
        try GitFixture.git(["add", "a.txt"], in: repo)
        try GitFixture.write(["b.txt": "unstaged change\n", "untracked.txt": "host only\n", "debug.log": "ignored\n"], in: repo)
        let before = try hostSnapshot()

        let request = sandboxRequest("fake:write=a.txt:agent fake:write=new.txt:n fake:commit=agent")
        let result = try await fixture.run(request)
        #expect(result.status == .completed, "\(result.error ?? "")")
        #expect(try hostSnapshot() == before)

        let sandbox = try #require(result.localSandbox)
        #expect(sandbox.baseSha == base)
        #expect(!FileManager.default.fileExists(atPath: "\(sandbox.repoPath)/untracked.txt"))
        #expect(!FileManager.default.fileExists(atPath: "\(sandbox.repoPath)/debug.log"))
        #expect(try String(contentsOfFile: "\(sandbox.repoPath)/b.txt", encoding: .utf8) == "bravo\n")
        #expect(try String(contentsOfFile: "\(sandbox.path)/.sandbox.env", encoding: .utf8).contains("DISPATCH_SANDBOX_BASE_SHA='\(base)'"))
        #expect(FileManager.default.fileExists(atPath: "\(sandbox.path)/sandbox.json"))
    }

    /// The agent rewrites its own `.git/config`: `core.worktree` at the runner's state dir (the export read the state
    /// dir into the patch), and `core.symlinks=false` with a link to a secret (the export read the secret's content).
    /// The export reads only the checkout: no secret and no state file in the patch, its file or `touchedFiles`; the
    /// link is exported as a link.
    @Test func theExportTrustsNothingTheAgentWroteIntoItsGitConfig() async throws {
        let secret = "SECRET-\(UUID().uuidString)"
        let secretFile = "\(fixture.configuration.stateDir)/secret-token"
        try Data(secret.utf8).write(to: URL(fileURLWithPath: secretFile))
        let attacks = [
            "fake:git-config=core.worktree:\(fixture.configuration.stateDir) fake:write=x.txt:x",
            "fake:git-config=core.symlinks:false fake:symlink=leak:\(secretFile)",
        ]
        for task in attacks {
            let result = try await fixture.run(sandboxRequest(task))
            #expect(result.status == .completed, "\(task): \(result.error ?? "")")
            let artifacts = try #require(result.artifacts)
            let patch = try String(contentsOfFile: try #require(artifacts.patchPath), encoding: .utf8)
            #expect(!patch.contains(secret) && !(artifacts.patch ?? "").contains(secret), "\(task): the secret is in the patch")
            #expect(!artifacts.touchedFiles.contains { $0.contains("secret-token") || $0.contains("dispatch.sqlite") }, "\(artifacts.touchedFiles)")
            #expect(!patch.contains("dispatch.sqlite") && !patch.contains("inbox/"), "\(task): the state dir is in the patch")
        }
        // A `.git` that is a link (to a repository the agent chose) is refused, not followed.
        let moved = try await fixture.run(sandboxRequest("fake:mv=.git:elsewhere.git fake:symlink=.git:elsewhere.git"))
        #expect(
            moved.status == .failed && moved.error?.contains(".git is not a directory of the checkout") == true,
            "\(moved.error ?? "") \(moved.logs?.stderr ?? "")"
        )
        let link = try await fixture.run(sandboxRequest(attacks[1]))
        #expect(link.artifacts?.touchedFiles == ["leak"])
        #expect(link.artifacts?.patch?.contains("new file mode 120000") == true, "the link is exported as a link: \(link.artifacts?.patch ?? "")")
    }

    /// An agent that points its checkout's `objects/info/alternates` at another repository's objects (another run's,
    /// the state dir's) and commits a tree naming one of its blobs gets nothing of it into the export: the runner reads
    /// objects only from the checkout's own database and the host's it recorded itself.
    @Test func theExportReadsNoObjectDatabaseTheAgentNamed() throws {
        let other = fixture.dir.child("other-run")
        let secret = "SECRET-\(UUID().uuidString)\n"
        try GitFixture.makeRepo(at: other, files: ["secret.txt": secret])
        let blob = try GitFixture.git(["rev-parse", "HEAD:secret.txt"], in: other).trimmingCharacters(in: .whitespacesAndNewlines)
        let host = fixture.dir.child("host-alternates")
        try GitFixture.makeRepo(at: host, files: ["a.txt": "alpha\n"])
        let request = DispatchRequest(requestId: "alternates-\(UUID().uuidString.prefix(6))", task: "t", tool: .codex, cwd: host)
        let sandbox = try SandboxMaterializer(root: fixture.dir.child("sandboxes")).materialize(request, defaultCwd: host)
        // What the agent does in its checkout.
        let alternates = "\(sandbox.repoPath)/.git/objects/info/alternates"
        let own = try String(contentsOfFile: alternates, encoding: .utf8)
        try Data((own + "\(other)/.git/objects\n").utf8).write(to: URL(fileURLWithPath: alternates))
        try GitFixture.git(["update-index", "--add", "--cacheinfo", "100644,\(blob),leak.txt"], in: sandbox.repoPath)
        try GitFixture.git(["commit", "-q", "-m", "leak"], in: sandbox.repoPath)
        let exported = try? ArtifactExporter().export(sandbox)
        let patch = (try? String(contentsOfFile: "\(sandbox.artifactsDir)/changes.patch", encoding: .utf8)) ?? ""
        #expect(!patch.contains("SECRET-") && !(exported?.patch ?? "").contains("SECRET-"), "another repository's blob was exported")
        // A link inside `.git` (a pack directory, a ref) into that repository is refused, not followed.
        try FileManager.default.removeItem(atPath: "\(sandbox.repoPath)/.git/objects/pack")
        try FileManager.default.createSymbolicLink(atPath: "\(sandbox.repoPath)/.git/objects/pack", withDestinationPath: "\(other)/.git/objects/pack")
        #expect(throws: (any Error).self) { try ArtifactExporter().export(sandbox) }
        try FileManager.default.removeItem(atPath: "\(sandbox.repoPath)/.git/objects/pack")
        try FileManager.default.createDirectory(atPath: "\(sandbox.repoPath)/.git/objects/pack", withIntermediateDirectories: true)
        // Without the runner's record (a sandbox made before it) the host database comes from the host repository,
        // still never from the agent's alternates.
        try FileManager.default.removeItem(atPath: sandbox.hostObjectsRecord)
        let unrecorded = (try? ArtifactExporter().export(sandbox))?.patch ?? ""
        #expect(!unrecorded.contains("SECRET-"), "another repository's blob was exported")
        // Reading the agent's alternates, as libgit2 does by default, finds the blob: the check can fail.
        let trusting = try Repository.openUntrusted(checkout: sandbox.repoPath)
        #expect(trusting.objectExists(try #require(ObjectID(hex: blob))), "libgit2's default would read the agent's alternates")
    }

    /// A FIFO where libgit2 opens a file with a plain blocking open(2) (`.git/config`) would hang the export past
    /// every flag: refused up front, and the run ends.
    @Test func aFIFOInTheRepositoryDoesNotHangTheExport() async throws {
        let config = try await fixture.run(sandboxRequest("fake:mkfifo=.git/config fake:answer=x", timeout: 20))
        #expect(config.status == .failed && config.error?.contains(".git/config is not a regular file") == true, "\(config.error ?? "")")
    }

    /// Work that never looks at its flag (a read stuck in the kernel) is given up on a grace after its limit, and can
    /// write nothing after that.
    @Test func stuckWorkIsGivenUpOnAndCanNoLongerWrite() async throws {
        let cancellation = CheckoutCancellation()
        let release = DispatchSemaphore(value: 0)
        let wrote = Mutex(false)
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: SandboxError.self) {
            try await BlockingWork.run("stuck work", timeout: .milliseconds(300), cancellation: cancellation) {
                release.wait()
                if cancellation.whileLive({ true }) != nil { wrote.withLock { $0 = true } }
            }
        }
        #expect(clock.now - start < .seconds(8), "given up on after \(clock.now - start)")
        release.signal()
        try await Task.sleep(for: .milliseconds(200))
        #expect(!wrote.withLock { $0 }, "the work wrote after it was given up on")
    }

    /// A temp patch an export killed midway (kill -9) left is removed by the next export of that sandbox.
    @Test func aTempPatchLeftByAKilledExportIsRemoved() async throws {
        let result = try await fixture.run(sandboxRequest("fake:write=a.txt:changed"))
        let info = try #require(result.localSandbox)
        let stale = "\(info.path)/artifacts/.changes.patch.tmp-999999"
        try Data("half a patch".utf8).write(to: URL(fileURLWithPath: stale))
        let artifacts = try ArtifactExporter().export(LocalSandbox(abandoned: info))
        #expect(artifacts.touchedFiles == ["a.txt"])
        #expect(!FileManager.default.fileExists(atPath: stale))
    }

    /// `touchedFiles` is bounded: the first 10,000 paths in order, with the count and `touchedFilesTruncated`.
    @Test func touchedFilesAreBoundedAndCounted() async throws {
        let result = try await fixture.run(sandboxRequest("fake:many=gen:10005 fake:write=a.txt:changed"))
        #expect(result.status == .completed, "\(result.error ?? "")")
        let artifacts = try #require(result.artifacts)
        #expect(artifacts.touchedFiles.count == 10_000 && artifacts.touchedFiles.first == "a.txt")
        #expect(artifacts.touchedFilesCount == 10_006 && artifacts.touchedFilesTruncated == true)
        let small = try await fixture.run(sandboxRequest("fake:write=a.txt:changed"))
        #expect(small.artifacts?.touchedFilesCount == nil && small.artifacts?.touchedFilesTruncated == nil)
    }

    /// An export that would bust the budget (many large sparse files, a short timeout) ends on time and writes
    /// nothing after the result: no file of the run's artifacts changes later, and no temp file is left.
    @Test func anExportPastItsBudgetStopsAndWritesNothingAfterTheResult() async throws {
        let task = (0..<150).map { "fake:sparse=big-\($0).bin:60000000" }.joined(separator: " ")
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await fixture.run(sandboxRequest(task, timeout: 3))
        let elapsed = clock.now - start
        #expect(result.status == .failed && result.error?.contains("artifacts") == true, "\(result.error ?? "")")
        #expect(elapsed < .seconds(8), "ended \(elapsed) after the start of a 3 s budget")
        let artifactsDir = "\(try #require(result.localSandbox).path)/artifacts"
        func listing() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: artifactsDir)) ?? []).sorted().map { name in
                var info = stat()
                _ = lstat("\(artifactsDir)/\(name)", &info)
                return "\(name) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
            }
        }
        let after = listing()
        try await Task.sleep(for: .seconds(3))
        #expect(listing() == after, "the export went on writing after the result: \(after) -> \(listing())")
        #expect(!listing().contains { $0.hasPrefix(".changes.patch.tmp") }, "\(listing())")
    }

    @Test func patchReproducesTheSandboxTreeExactly() async throws {
        let task = [
            "fake:write=a.txt:changed", "fake:rm=b.txt", "fake:mv=c.txt:c-renamed.txt", "fake:chmod-x=script.sh",
            "fake:binary=bin.dat", "fake:commit=agent-commit", "fake:write=untracked.txt:new", "fake:write=a.txt:changed-again",
            "fake:write=ignored.log:never",
        ].joined(separator: " ")
        let result = try await fixture.run(sandboxRequest(task))
        #expect(result.status == .completed, "\(result.error ?? "")")
        let artifacts = try #require(result.artifacts)
        let sandbox = try #require(result.localSandbox)
        #expect(artifacts.touchedFiles == ["a.txt", "b.txt", "bin.dat", "c-renamed.txt", "c.txt", "script.sh", "untracked.txt"])
        #expect(artifacts.headSha != base)
        let patchPath = try #require(artifacts.patchPath)
        #expect(try Data(contentsOf: URL(fileURLWithPath: patchPath)) == Data((artifacts.patch ?? "").utf8))
        #expect(FileManager.default.fileExists(atPath: "\(sandbox.path)/artifacts/artifacts.json"))

        let fresh = fixture.dir.child("fresh")
        try GitFixture.git(["clone", "-q", repo, fresh], in: fixture.dir.path)
        try GitFixture.git(["checkout", "-q", "--detach", base], in: fresh)
        try GitFixture.git(["apply", "--binary", patchPath], in: fresh)
        try? FileManager.default.removeItem(atPath: "\(sandbox.repoPath)/ignored.log")
        #expect(try GitFixture.workingTreeHash(fresh) == GitFixture.workingTreeHash(sandbox.repoPath))
        let mode = try FileManager.default.attributesOfItem(atPath: "\(fresh)/script.sh")[.posixPermissions] as! Int
        #expect(mode & 0o111 != 0)
    }

    @Test func baseShaMayBeAbbreviatedOrABranch() async throws {
        try GitFixture.write(["a.txt": "second\n"], in: repo)
        try GitFixture.git(["commit", "-qam", "second"], in: repo)
        try GitFixture.git(["branch", "feature", base], in: repo)
        for spec in [String(base.prefix(8)), "feature"] {
            let result = try await fixture.run(sandboxRequest("fake:answer=ok", baseSha: spec))
            #expect(result.status == .completed, "\(spec): \(result.error ?? "")")
            #expect(result.localSandbox?.baseSha == base)
            #expect(try String(contentsOfFile: "\(result.localSandbox!.repoPath)/a.txt", encoding: .utf8) == "alpha\n")
        }
        let head = try await fixture.run(sandboxRequest("fake:answer=ok"))
        #expect(try String(contentsOfFile: "\(head.localSandbox!.repoPath)/a.txt", encoding: .utf8) == "second\n")
    }

    @Test func unknownBaseShaFailsNamingIt() async throws {
        let result = try await fixture.run(sandboxRequest("x", baseSha: "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"))
        #expect(result.status == .failed)
        #expect(result.error?.contains("deadbeefdeadbeefdeadbeefdeadbeefdeadbeef") == true, "\(result.error ?? "")")
        #expect(result.attempts.isEmpty)
    }

    @Test func cwdMapsIntoTheSandboxAndOutsideCwdFails() async throws {
        let argvDir = TempDir("argv")
        let sub = "\(repo)/sub/dir"
        let result = try await fixture.run(sandboxRequest("fake:write=here.txt:x", cwd: sub))
        #expect(result.status == .completed, "\(result.error ?? "")")
        #expect(result.localSandbox?.workDir == "\(result.localSandbox!.repoPath)/sub/dir")
        #expect(result.artifacts?.touchedFiles == ["sub/dir/here.txt"])
        let outside = try await fixture.run(sandboxRequest("x", cwd: argvDir.path))
        #expect(outside.status == .failed)
        #expect(outside.error?.contains("not inside a git repository") == true, "\(outside.error ?? "")")
    }

    @Test func timeoutStillExportsThePartialWork() async throws {
        let request = sandboxRequest("fake:write=partial.txt:half fake:hang", timeout: 3)
        let clock = ContinuousClock()
        let start = clock.now
        let result = try await fixture.run(request)
        #expect(result.status == .failed)
        #expect(result.error?.contains("timed out after") == true, "\(result.error ?? "")")
        #expect(result.artifacts?.touchedFiles == ["partial.txt"])
        #expect(result.artifacts?.patch?.contains("+half") == true)
        #expect(clock.now - start < .seconds(3) + .seconds(1) + .seconds(2))
        #expect(survivors(of: request.requestId).isEmpty)
        let rows = try await fixture.engine.store.sandboxes(requestId: request.requestId)
        #expect(rows.map(\.state) == [.failed])
    }

    @Test func concurrentDispatchesOfOneBaseGetDistinctSandboxes() async throws {
        let engineFixture = fixture
        let first = sandboxRequest("fake:write=one.txt:1 fake:sleep=0.5")
        let second = sandboxRequest("fake:write=two.txt:2 fake:sleep=0.5")
        async let a = engineFixture.run(first)
        async let b = engineFixture.run(second)
        let (ra, rb) = try await (a, b)
        #expect(ra.status == .completed && rb.status == .completed, "\(ra.error ?? "") \(rb.error ?? "")")
        #expect(ra.localSandbox?.path != rb.localSandbox?.path)
        #expect(ra.artifacts?.touchedFiles == ["one.txt"])
        #expect(rb.artifacts?.touchedFiles == ["two.txt"])
    }

    @Test func verificationRunsInTheSandboxAndItsFailureFailsTheDispatch() async throws {
        var passing = sandboxRequest("fake:write=v.txt:ok")
        passing.verificationCommands = ["test -f v.txt", "echo verified"]
        let ok = try await fixture.run(passing)
        #expect(ok.status == .completed, "\(ok.error ?? "")")
        #expect(ok.artifacts?.verification?.success == true)
        #expect(ok.artifacts?.verification?.output.contains("verified") == true)

        var failing = sandboxRequest("fake:answer=done")
        failing.verificationCommands = ["test -f missing.txt", "echo never"]
        let bad = try await fixture.run(failing)
        #expect(bad.status == .failed)
        #expect(bad.error?.contains("verification command 1/2 failed: exit 1") == true, "\(bad.error ?? "")")
        #expect(bad.artifacts?.verification?.success == false)
        #expect(bad.artifacts?.verification?.output.contains("never") == false)
    }

    /// Host-mode runs keep their logs under `<state>/runs/<requestId>`: swept once terminal for the retention of
    /// their status, never while running.
    @Test func hostRunLogsAreRemovedAfterTheirRetention() async throws {
        var request = fixture.request(.codex, "fake:answer=ok")
        request.cwd = repo
        let done = try await fixture.run(request)
        #expect(done.status == .completed, "\(done.error ?? "")")
        let runs = "\(fixture.configuration.stateDir)/runs"
        let logs = "\(runs)/\(done.requestId)"
        #expect(FileManager.default.fileExists(atPath: logs))
        try FileManager.default.createDirectory(atPath: "\(runs)/unknown-run", withIntermediateDirectories: true)
        var live = fixture.request(.codex, "fake:hang")
        live.cwd = repo
        _ = try await fixture.engine.admit(live, status: .running, owner: .current(kind: .run))
        try FileManager.default.createDirectory(atPath: "\(runs)/\(live.requestId)", withIntermediateDirectories: true)

        let janitor = SandboxJanitor(store: fixture.engine.store, runsDirectory: runs)
        let completedAt = try #require(done.completedAt.flatMap(ISO8601.date))
        #expect(try await janitor.sweepRunLogs(now: completedAt.addingTimeInterval(3600)).isEmpty, "within the retention")
        let swept = try await janitor.sweepRunLogs(now: Date().addingTimeInterval(80 * 3600))
        #expect(Set(swept.map(\.requestId)) == [done.requestId, "unknown-run"], "\(swept)")
        #expect(!FileManager.default.fileExists(atPath: logs))
        #expect(FileManager.default.fileExists(atPath: "\(runs)/\(live.requestId)"), "a running request's logs stay")
    }

    @Test func registryRetentionAndCleanup() async throws {
        let store = fixture.engine.store
        let done = try await fixture.run(sandboxRequest("fake:answer=ok"))
        let failed = try await fixture.run(sandboxRequest("fake:exit=2"))
        let doneRow = try #require(try await store.sandbox(done.localSandbox!.sandboxId))
        let failedRow = try #require(try await store.sandbox(failed.localSandbox!.sandboxId))
        #expect(doneRow.state == .completed && failedRow.state == .failed)
        let created = try #require(ISO8601.date(doneRow.createdAt))
        let doneExpiry = try #require(doneRow.cleanupAfter.flatMap(ISO8601.date))
        let failedExpiry = try #require(failedRow.cleanupAfter.flatMap(ISO8601.date))
        #expect(abs(doneExpiry.timeIntervalSince(created) - 24 * 3600) < 120)
        #expect(abs(failedExpiry.timeIntervalSince(created) - 72 * 3600) < 120)
        #expect(done.localSandbox?.cleanupAfter == doneRow.cleanupAfter)

        let janitor = SandboxJanitor(store: store)
        let removed = try await janitor.cleanup(.expired, force: false, dryRun: false, now: created.addingTimeInterval(25 * 3600))
        #expect(removed.map(\.sandboxId) == [doneRow.sandboxId])
        #expect(!FileManager.default.fileExists(atPath: doneRow.path))
        #expect(FileManager.default.fileExists(atPath: failedRow.path))

        let preview = try await janitor.cleanup(.requestId(failed.requestId), force: false, dryRun: true)
        #expect(preview.map(\.action) == ["would-remove"])
        #expect(FileManager.default.fileExists(atPath: failedRow.path))

        var active = failedRow
        active.sandboxId = "active-one"
        active.requestId = "still-running"
        active.state = .running
        try await store.saveSandbox(active)
        let skipped = try await janitor.cleanup(.sandboxId("active-one"), force: false, dryRun: false)
        #expect(skipped.map(\.action) == ["skipped-active"])

        try FileManager.default.removeItem(atPath: failedRow.path)
        let swept = try await janitor.sweep()
        #expect(swept.contains { $0.sandboxId == failedRow.sandboxId && $0.action == "reconciled" })
        #expect(try await store.sandbox(failedRow.sandboxId)?.state == .removed)
    }

    /// A shared store holds every replica's sandbox rows; each janitor keeps its own disk only (CONTRACT §8): a row
    /// of another replica, whose directory is not on this disk, is neither marked removed nor removed here. The
    /// embedded store is one machine's: there every row is the janitor's, whatever name it was made under (a
    /// container recreated with a new hostname keeps its sandboxes cleaned).
    @Test(arguments: StoreKind.allCases)
    func aJanitorOfASharedStoreLeavesAnotherReplicasSandboxesToIt(_ kind: StoreKind) async throws {
        guard let fixture = try await EngineFixture.on(kind) else { return }
        let store = fixture.engine.store
        var request = sandboxRequest("fake:answer=ok")
        request.cwd = repo
        let done = try await fixture.run(request)
        var theirs = try #require(try await store.sandbox(done.localSandbox!.sandboxId))
        #expect(theirs.replica == ReplicaName.current, "a sandbox names the replica whose disk holds it")
        theirs.sandboxId = "on-replica-a-\(kind)"
        theirs.path = fixture.dir.child("only-on-replica-a")
        theirs.replica = "replica-a"
        try await store.saveSandbox(theirs)
        let later = Date().addingTimeInterval(30 * 3600)
        _ = try await SandboxJanitor(store: store, replica: "replica-b").sweep(now: later)
        let state = try await store.sandbox(theirs.sandboxId)?.state
        #expect(state == (kind == .postgres ? .completed : .removed), "\(String(describing: state))")
        _ = try await SandboxJanitor(store: store, replica: "replica-a").sweep(now: later)
        #expect(try await store.sandbox(theirs.sandboxId)?.state == .removed, "its own replica's janitor reconciles it")
    }

    @Test func identityIsDeterministicAndPathSafe() {
        var request = DispatchRequest(requestId: "Req:1.A_b", task: "t", tool: .codex, workflowId: "WF/../x", storyId: "Story 7")
        let one = SandboxIdentity(request: request, root: "/root")
        #expect(one == SandboxIdentity(request: request, root: "/root"))
        #expect(one.path == "/root/wf-x/story-7/\(one.sandboxId)")
        #expect(one.sandboxId.hasPrefix("req-1-a-b-"))
        request.storyId = "Story 8"
        #expect(SandboxIdentity(request: request, root: "/root").sandboxId != one.sandboxId)
    }
}

@Suite struct SandboxFilterTests {
    @Test func gitattributesConversionsMatchGitsOwnCheckout() async throws {
        let fixture = try EngineFixture()
        let repo = fixture.dir.child("crlf")
        try GitFixture.makeRepo(at: repo, files: [".gitattributes": "*.txt text eol=crlf\n", "a.txt": "one\ntwo\n", "b.bin": "raw\n"])
        var request = fixture.request(.codex, "fake:answer=ok")
        request.executionMode = .sandbox
        request.cwd = repo
        let result = try await fixture.run(request)
        #expect(result.status == .completed, "\(result.error ?? "")")
        let sandbox = try #require(result.localSandbox)
        let clone = fixture.dir.child("clone")
        try GitFixture.git(["clone", "-q", repo, clone], in: fixture.dir.path)
        for file in ["a.txt", "b.bin", ".gitattributes"] {
            let ours = try Data(contentsOf: URL(fileURLWithPath: "\(sandbox.repoPath)/\(file)"))
            let gits = try Data(contentsOf: URL(fileURLWithPath: "\(clone)/\(file)"))
            #expect(ours == gits, "\(file)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(sandbox.repoPath)/a.txt")) == Data("one\r\ntwo\r\n".utf8))
        #expect(result.artifacts?.touchedFiles == [], "a clean checkout shows no changes")
    }
}

/// The warm pool in-process: bounded by repositories, one commit each.
@Suite struct WarmPoolLimitTests {
    @Test func thePoolKeepsCheckoutsOfAtMostEightRepositoriesTheLatestAskedFor() async throws {
        let dir = TempDir("warm-limit")
        let pool = WarmPool(size: 1, sandboxRoot: dir.child("sandboxes"), registry: nil, logger: Logger(label: "test"))
        var repos: [(path: String, base: String)] = []
        for index in 0...WarmPool.maxRepositories {
            let path = dir.child("repo-\(index)")
            repos.append((path, try GitFixture.makeRepo(at: path, files: ["f.txt": "\(index)\n"])))
        }
        let warm = dir.child("sandboxes/.warm")
        func left() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: warm)) ?? []).filter { !$0.hasSuffix(".partial") } }
        await withDiscardingTaskGroup { group in
            group.addTask { await pool.run() }
            for repo in repos {
                pool.wanted(sourceRepo: repo.path, baseSha: repo.base)
                #expect(await eventually { pool.readyCount(sourceRepo: repo.path, baseSha: repo.base) == 1 })
            }
            #expect(pool.readyCount(sourceRepo: repos[0].path, baseSha: repos[0].base) == 0, "the one asked for longest ago gave its up")
            for repo in repos.dropFirst() { #expect(pool.readyCount(sourceRepo: repo.path, baseSha: repo.base) == 1) }
            #expect(await eventually { left().count == WarmPool.maxRepositories }, "and its checkout is gone from disk: \(left())")
            group.cancelAll()
        }
    }
}
