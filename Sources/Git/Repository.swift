import CGit2
import Foundation

/// A git repository opened through libgit2. Not thread-safe: use one instance from one thread at a time.
package final class Repository {
    let handle: OpaquePointer

    private init(handle: OpaquePointer) {
        self.handle = handle
    }

    /// Takes ownership of a handle libgit2 returned.
    convenience init(wrapping handle: OpaquePointer) {
        self.init(handle: handle)
    }

    deinit { git_repository_free(handle) }

    /// Opens the repository at `path` (its working directory or `.git` directory).
    package convenience init(path: String) throws(GitError) {
        Libgit2.ensureInitialized()
        var repo: OpaquePointer?
        try check(git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue, nil), "open repository \(path)")
        self.init(handle: repo!)
    }

    /// Opens a checkout an agent worked in, trusting nothing in it (CONTRACT §7): its `.git` must be a plain directory
    /// of the checkout (not a symlink, not a `gitdir:` file, no `commondir` redirect); it is opened bare, so
    /// `core.worktree` is never read, with an empty configuration in place of every level (the repository's, the
    /// user's, the system's), so `core.symlinks` and the rest keep libgit2's defaults (symlinks are exported as links,
    /// never followed); and its work tree is the checkout itself.
    package static func openUntrusted(checkout: String, alternates: [String]? = nil) throws(GitError) -> Repository {
        Libgit2.ensureInitialized()
        func refuse(_ why: String) -> GitError { GitError(code: .failed, operation: "open the checkout \(checkout)", message: why) }
        guard let resolved = realpath(checkout, nil) else { throw refuse("it does not exist") }
        let root = String(cString: resolved)
        free(resolved)
        let dotGit = "\(root)/.git"
        var info = stat()
        guard lstat(dotGit, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { throw refuse(".git is not a directory of the checkout") }
        guard lstat("\(dotGit)/commondir", &info) != 0 else { throw refuse(".git/commondir points elsewhere") }
        // What libgit2 opens with a plain blocking open(): a FIFO there would hang the export past every limit, and a
        // link would read another repository's.
        for name in ["HEAD", "config", "index", "packed-refs", "objects/info/alternates"] where lstat("\(dotGit)/\(name)", &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFREG else { throw refuse(".git/\(name) is not a regular file") }
        }
        for name in ["objects", "refs"] {
            guard lstat("\(dotGit)/\(name)", &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { throw refuse(".git/\(name) is not a directory") }
        }
        if let odd = firstNonPlainEntry(in: dotGit) { throw refuse(".git/\(odd) is a link or a special file") }
        var raw: OpaquePointer?
        try check(git_repository_open_bare(&raw, dotGit), "open \(dotGit)")
        let repo = Repository(handle: raw!)
        guard repo.gitDir == dotGit, repo.commonDir == dotGit else { throw refuse(".git resolves outside the checkout") }
        var config: OpaquePointer?
        try check(git_config_new(&config), "prepare an empty configuration")
        defer { git_config_free(config) }
        try check(git_repository_set_config(raw, config), "set aside the configuration of \(dotGit)")
        try check(git_repository_set_workdir(raw, root, 0), "set the work tree of \(dotGit) to \(root)")
        if let alternates { try repo.setObjectDatabase(own: "\(dotGit)/objects", alternates: alternates) }
        return repo
    }

    /// The first entry under `directory` (relative) that is neither a regular file nor a directory: libgit2 would follow
    /// a link (`objects/pack`, a ref) into another repository, and open a FIFO with a blocking `open(2)`. Links are not
    /// followed by the walk itself.
    private static func firstNonPlainEntry(in directory: String) -> String? {
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return "" }
        while let relative = walker.nextObject() as? String {
            var info = stat()
            guard lstat("\(directory)/\(relative)", &info) == 0 else { continue }
            let kind = info.st_mode & S_IFMT
            if kind != S_IFREG && kind != S_IFDIR { return relative }
        }
        return nil
    }

    /// Reads objects only from `own` and `alternates` (the ones the runner wrote), never from the object databases
    /// the repository's own `objects/info/alternates` names: an agent rewriting it could otherwise have another run's
    /// objects read into its export.
    private func setObjectDatabase(own: String, alternates: [String]) throws(GitError) {
        var odb: OpaquePointer?
        try check(git_odb_new(&odb), "prepare an object database")
        defer { git_odb_free(odb) }
        var pack: UnsafeMutablePointer<git_odb_backend>?
        var loose: UnsafeMutablePointer<git_odb_backend>?
        try check(git_odb_backend_pack(&pack, own), "read the packs of \(own)")
        try check(git_odb_add_backend(odb, pack, 2), "add the packs of \(own)")
        try check(git_odb_backend_loose(&loose, own, -1, 0, 0, 0), "read the loose objects of \(own)")
        try check(git_odb_add_backend(odb, loose, 1), "add the loose objects of \(own)")
        for alternate in alternates {
            try check(git_odb_add_disk_alternate(odb, alternate), "add the object database \(alternate)")
        }
        try check(git_repository_set_odb(handle, odb), "use the object database of \(own)")
    }

    /// Opens the repository containing `path`, searching upwards like `git` does.
    package static func discover(containing path: String) throws(GitError) -> Repository {
        Libgit2.ensureInitialized()
        var repo: OpaquePointer?
        try check(git_repository_open_ext(&repo, path, 0, nil), "find a git repository containing \(path)")
        return Repository(handle: repo!)
    }

    /// Creates an empty non-bare repository at `path` (with `.git` inside).
    package static func create(at path: String) throws(GitError) -> Repository {
        Libgit2.ensureInitialized()
        var repo: OpaquePointer?
        try check(git_repository_init(&repo, path, 0), "create a repository at \(path)")
        return Repository(handle: repo!)
    }

    /// The working directory root (no trailing slash), or `nil` for a bare repository.
    package var workdir: String? {
        git_repository_workdir(handle).map { Self.trimSlash(String(cString: $0)) }
    }

    /// The `.git` directory of this worktree.
    package var gitDir: String { Self.trimSlash(String(cString: git_repository_path(handle))) }

    /// The directory shared by all worktrees (holds `objects/`).
    package var commonDir: String { Self.trimSlash(String(cString: git_repository_commondir(handle))) }

    /// The object database directory.
    package var objectsDir: String { "\(commonDir)/objects" }

    /// Resolves a full or abbreviated SHA, a branch, tag or any rev spec to a commit id.
    package func resolveCommit(_ spec: String) throws(GitError) -> ObjectID {
        var object: OpaquePointer?
        try check(git_revparse_single(&object, handle, spec), "resolve \"\(spec)\" to a commit")
        defer { git_object_free(object) }
        var commit: OpaquePointer?
        try check(git_object_peel(&commit, object, GIT_OBJECT_COMMIT), "resolve \"\(spec)\" to a commit")
        defer { git_object_free(commit) }
        return ObjectID(git_object_id(commit))
    }

    /// The commit HEAD points at, or `nil` on an unborn branch.
    package func headCommit() throws(GitError) -> ObjectID? {
        var oid = git_oid()
        let rc = git_reference_name_to_id(&oid, handle, "HEAD")
        if rc == GIT_ENOTFOUND.rawValue || rc == GIT_EUNBORNBRANCH.rawValue { return nil }
        try check(rc, "read HEAD")
        return ObjectID(oid)
    }

    /// The short name of the current branch, or `nil` when HEAD is detached or unborn.
    package func currentBranch() -> String? {
        var ref: OpaquePointer?
        guard git_repository_head(&ref, handle) == 0, let ref else { return nil }
        defer { git_reference_free(ref) }
        guard git_reference_is_branch(ref) != 0, let name = git_reference_shorthand(ref) else { return nil }
        return String(cString: name)
    }

    /// Whether the repository's object database can read `id`.
    package func objectExists(_ id: ObjectID) -> Bool {
        var odb: OpaquePointer?
        guard git_repository_odb(&odb, handle) == 0 else { return false }
        defer { git_odb_free(odb) }
        var oid = id.raw
        return git_odb_exists(odb, &oid) == 1
    }

    /// Makes the object database of `objectsDirectory` readable from this repository, as `objects/info/alternates` does.
    package func addAlternate(objectsDirectory: String) throws(GitError) {
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, handle), "open the object database of \(gitDir)")
        defer { git_odb_free(odb) }
        try check(git_odb_add_disk_alternate(odb, objectsDirectory), "add alternate \(objectsDirectory)")
    }

    /// Creates branch `name` at `commit` and points HEAD at it.
    package func createBranchAndSetHead(_ name: String, at commit: ObjectID) throws(GitError) {
        var oid = commit.raw
        var commitHandle: OpaquePointer?
        try check(git_commit_lookup(&commitHandle, handle, &oid), "look up commit \(commit)")
        defer { git_commit_free(commitHandle) }
        var ref: OpaquePointer?
        try check(git_branch_create(&ref, handle, name, commitHandle, 1), "create branch \(name)")
        git_reference_free(ref)
        try check(git_repository_set_head(handle, "refs/heads/\(name)"), "point HEAD at \(name)")
    }

    /// Deletes the local branch `name` (not the one HEAD is on).
    package func deleteBranch(_ name: String) throws(GitError) {
        var ref: OpaquePointer?
        try check(git_branch_lookup(&ref, handle, name, GIT_BRANCH_LOCAL), "look up branch \(name)")
        defer { git_reference_free(ref) }
        try check(git_branch_delete(ref), "delete branch \(name)")
    }

    /// Writes HEAD's tree to the index and the working directory, overwriting whatever is there.
    /// `filters: false` skips content filters; pass it only when ``checkoutNeedsFilters(_:)`` says none apply.
    /// With `cancellation`, setting it stops the checkout within one file (it fails with "checkout cancelled").
    package func forceCheckoutHead(filters: Bool = true, cancellation: CheckoutCancellation? = nil) throws(GitError) {
        if let cancellation {
            var odb: OpaquePointer?
            try check(git_repository_odb(&odb, handle), "open the object database of \(workdir ?? gitDir)")
            defer { git_odb_free(odb) }
            try check(cgit2_add_cancel_backend(odb, cancellation.flag), "arm the checkout's cancellation")
        }
        var options = git_checkout_options()
        try check(git_checkout_options_init(&options, UInt32(GIT_CHECKOUT_OPTIONS_VERSION)), "prepare checkout")
        options.checkout_strategy = GIT_CHECKOUT_FORCE.rawValue
        options.disable_filters = filters ? 0 : 1
        try check(git_checkout_head(handle, &options), "check out HEAD in \(workdir ?? gitDir)")
    }

    /// The commits reachable from `head` but not from `base`, newest first (`git rev-list base..head`).
    package func commits(from base: ObjectID, to head: ObjectID) throws(GitError) -> [ObjectID] {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, handle), "list commits")
        defer { git_revwalk_free(walk) }
        var headOid = head.raw
        var baseOid = base.raw
        try check(git_revwalk_push(walk, &headOid), "list commits from \(head)")
        try check(git_revwalk_hide(walk, &baseOid), "list commits since \(base)")
        var ids: [ObjectID] = []
        var next = git_oid()
        while true {
            let rc = git_revwalk_next(&next, walk)
            if rc == GIT_ITEROVER.rawValue { break }
            try check(rc, "list commits \(base)..\(head)")
            ids.append(ObjectID(next))
        }
        return ids
    }

    /// The contents of blob `id`.
    package func blob(_ id: ObjectID) throws(GitError) -> Data {
        var oid = id.raw
        var blob: OpaquePointer?
        try check(git_blob_lookup(&blob, handle, &oid), "read blob \(id)")
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard size > 0, let content = git_blob_rawcontent(blob) else { return Data() }
        return Data(bytes: content, count: size)
    }

    func tree(of commit: ObjectID) throws(GitError) -> Handle {
        var oid = commit.raw
        var commitHandle: OpaquePointer?
        try check(git_commit_lookup(&commitHandle, handle, &oid), "look up commit \(commit)")
        defer { git_commit_free(commitHandle) }
        var tree: OpaquePointer?
        try check(git_commit_tree(&tree, commitHandle), "read the tree of \(commit)")
        return Handle(tree!, free: git_tree_free)
    }

    /// The first parent of `commit`, if any.
    func firstParent(of commit: ObjectID) throws(GitError) -> ObjectID? {
        var oid = commit.raw
        var commitHandle: OpaquePointer?
        try check(git_commit_lookup(&commitHandle, handle, &oid), "look up commit \(commit)")
        defer { git_commit_free(commitHandle) }
        guard git_commit_parentcount(commitHandle) > 0, let parent = git_commit_parent_id(commitHandle, 0) else { return nil }
        return ObjectID(parent)
    }

    /// `path` without a trailing slash.
    package static func trimSlashPublic(_ path: String) -> String { trimSlash(path) }

    static func trimSlash(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }
}

extension Repository {
    /// The URL of remote `name` (e.g. `origin`), or `nil` when there is no such remote.
    package func remoteURL(_ name: String = "origin") -> String? {
        var remote: OpaquePointer?
        guard git_remote_lookup(&remote, handle, name) == 0, let remote else { return nil }
        defer { git_remote_free(remote) }
        return git_remote_url(remote).map { String(cString: $0) }
    }
}

/// A flag that stops a running checkout (budget spent, dispatch cancelled) within one file, so no thread goes on
/// writing files after its dispatch ended.
package final class CheckoutCancellation: @unchecked Sendable {
    // The flag is only touched through C atomics; the pointer itself never changes. `gate` serializes ``cancel()``
    // with ``whileLive(_:)``.
    let flag: UnsafeMutablePointer<Int32>
    private let gate = NSLock()

    package init() { flag = cgit2_flag_new() }

    deinit { cgit2_flag_free(flag) }

    /// Asks the checkout to stop. Once this returns, no ``whileLive(_:)`` body starts, and none is running.
    package func cancel() {
        gate.lock()
        defer { gate.unlock() }
        cgit2_flag_set(flag)
    }

    package var isCancelled: Bool { cgit2_flag_get(flag) != 0 }

    /// Runs `body` (a final write) unless cancelled, holding off ``cancel()`` meanwhile: `nil` when cancelled. A
    /// thread given up on after its limit can then never write past it.
    package func whileLive<T>(_ body: () throws -> T) rethrows -> T? {
        gate.lock()
        defer { gate.unlock() }
        guard !isCancelled else { return nil }
        return try body()
    }
}
