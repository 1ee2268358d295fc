import DispatchTestSupport
import Foundation
import Git
import Testing

@Suite struct RepositoryTests {
    let dir = TempDir("git")
    var path: String { dir.child("repo") }

    @Test func resolvesFullShortAndSymbolicSpecs() throws {
        let head = try GitFixture.makeRepo(at: path, files: ["f.txt": "one\n"])
        try GitFixture.git(["tag", "v1"], in: path)
        let repo = try Repository(path: path)
        for spec in [head, String(head.prefix(7)), "main", "HEAD", "v1", "refs/heads/main"] {
            #expect(try repo.resolveCommit(spec).hex == head, "\(spec)")
        }
        #expect(try repo.headCommit()?.hex == head)
        #expect(repo.currentBranch() == "main")
        #expect(repo.workdir == (path as NSString).resolvingSymlinksInPath)
    }

    @Test func errorsCarryLibgit2sMessageAndCode() throws {
        try GitFixture.makeRepo(at: path, files: ["f.txt": "one\n"])
        let repo = try Repository(path: path)
        do {
            _ = try repo.resolveCommit("no-such-branch")
            Issue.record("resolved a missing ref")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.description.contains("no-such-branch"))
            #expect(!error.message.isEmpty)
        }
        #expect(throws: GitError.self) { try Repository(path: dir.child("missing")) }
        #expect(throws: GitError.self) { try Repository.discover(containing: "/") }
    }

    @Test func discoversFromASubdirectory() throws {
        try GitFixture.makeRepo(at: path, files: ["a/b/c.txt": "x\n"])
        let repo = try Repository.discover(containing: "\(path)/a/b")
        #expect(repo.workdir == (path as NSString).resolvingSymlinksInPath)
        #expect(repo.objectsDir.hasSuffix(".git/objects"))
    }

    @Test func listsCommitsStatusAndBlobs() throws {
        let first = try GitFixture.makeRepo(at: path, files: ["f.txt": "one\n"])
        try GitFixture.write(["f.txt": "two\n", "g.txt": "gee\n"], in: path)
        try GitFixture.git(["add", "-A"], in: path)
        try GitFixture.git(["commit", "-qm", "second"], in: path)
        try GitFixture.git(["rm", "-q", "g.txt"], in: path)
        try GitFixture.git(["commit", "-qm", "third"], in: path)
        let repo = try Repository(path: path)
        let head = try #require(try repo.headCommit())
        let commits = try repo.commits(from: ObjectID(hex: first)!, to: head)
        #expect(commits.count == 2)
        #expect(commits.first == head)
        #expect(try repo.pathsChangedByCommits(from: ObjectID(hex: first)!, to: head) == ["f.txt", "g.txt"])

        try GitFixture.write(["new.txt": "n\n", "f.txt": "three\n"], in: path)
        let status = try repo.status()
        #expect(Set(status.map(\.path)) == ["f.txt", "new.txt"])
        #expect(status.first { $0.path == "new.txt" }?.isUntracked == true)

        let blobId = try GitFixture.git(["rev-parse", "HEAD:f.txt"], in: path).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try repo.blob(ObjectID(hex: blobId)!) == Data("two\n".utf8))
    }

    @Test func workingTreeChangeIncludesUntrackedAndBinary() throws {
        let base = try GitFixture.makeRepo(at: path, files: ["f.txt": "one\n", ".gitignore": "*.tmp\n"])
        try GitFixture.write(["f.txt": "changed\n", "u.txt": "untracked\n", "skip.tmp": "ignored\n"], in: path)
        try Data([0, 1, 2, 255, 0, 7]).write(to: URL(fileURLWithPath: "\(path)/b.bin"))
        let repo = try Repository(path: path)
        let patchFile = "\(path).patch"
        let change = try repo.workingTreeChange(from: ObjectID(hex: base)!, writingPatchTo: patchFile, maxFileBytes: 1 << 20)
        #expect(Set(change.entries.map(\.newPath)) == ["f.txt", "u.txt", "b.bin"])
        let patch = try String(contentsOfFile: patchFile, encoding: .utf8)
        #expect(patch.contains("GIT binary patch"))
        #expect(patch.contains("+untracked"))
        #expect(!patch.contains("ignored"))
    }
}

@Suite struct CheckoutFilterTests {
    let dir = TempDir("git-filters")

    @Test func filtersAreSkippedOnlyWhenNothingCouldConfigureThem() throws {
        let plain = dir.child("plain")
        try GitFixture.makeRepo(at: plain, files: ["a.txt": "x\n"])
        let repo = try Repository(path: plain)
        #expect(try repo.checkoutNeedsFilters(repo.headCommit()!) == false)

        let nested = dir.child("nested")
        try GitFixture.makeRepo(at: nested, files: ["a.txt": "x\n", "deep/dir/.gitattributes": "*.txt text eol=crlf\n"])
        let nestedRepo = try Repository(path: nested)
        #expect(try nestedRepo.checkoutNeedsFilters(nestedRepo.headCommit()!) == true)

        try GitFixture.git(["config", "core.autocrlf", "true"], in: plain)
        let configured = try Repository(path: plain)
        #expect(try configured.checkoutNeedsFilters(configured.headCommit()!) == true)
    }
}
