import DispatchCore
import DispatchStore
import Foundation
import Git

/// Makes a clean checkout of the repo containing `cwd` at `baseSha`, sharing the host's object database
/// read-only through `objects/info/alternates`. The host repository is only read: no worktree entry, ref,
/// index or working-tree change is made there.
package struct SandboxMaterializer: Sendable {
    package let root: String

    package init(root: String) {
        self.root = root
    }

    /// Blocking; call through ``BlockingWork``. ``plan(_:defaultCwd:)`` then ``checkout(_:request:cancellation:)``.
    package func materialize(_ request: DispatchRequest, defaultCwd: String) throws -> LocalSandbox {
        try checkout(try plan(request, defaultCwd: defaultCwd), request: request)
    }

    /// Where the sandbox goes and at which commit, without writing anything: resolves the host repository, the
    /// `cwd` inside it and `baseSha`. Blocking (libgit2), but short: the sandbox can be registered before the
    /// checkout starts.
    package func plan(_ request: DispatchRequest, defaultCwd: String) throws -> LocalSandbox {
        let cwd = Self.realPath(request.cwd ?? defaultCwd)
        let host: Repository
        do {
            host = try Repository.discover(containing: cwd)
        } catch {
            throw SandboxError(code: .notARepository, message: "cwd \(cwd) is not inside a git repository (\(error.message))", underlying: error)
        }
        guard let hostRoot = host.workdir.map(Self.realPath) else {
            throw SandboxError(code: .notARepository, message: "the repository containing \(cwd) is bare; sandbox mode needs a working tree")
        }
        guard cwd == hostRoot || cwd.hasPrefix(hostRoot + "/") else {
            throw SandboxError(code: .cwdOutsideRepo, message: "cwd \(cwd) is outside the repository root \(hostRoot)")
        }
        let relative = String(cwd.dropFirst(hostRoot.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let spec = request.baseSha ?? "HEAD"
        let base: ObjectID
        do {
            base = try host.resolveCommit(spec)
        } catch {
            throw SandboxError(
                code: .baseNotFound,
                message: "baseSha \"\(spec)\" does not name a commit in \(hostRoot): \(error.message)",
                underlying: error
            )
        }
        let identity = SandboxIdentity(request: request, root: root)
        let repoPath = "\(identity.path)/repo"
        return LocalSandbox(
            sandboxId: identity.sandboxId,
            path: identity.path,
            repoPath: repoPath,
            workDir: relative.isEmpty ? repoPath : "\(repoPath)/\(relative)",
            baseSha: base.hex,
            sourceRepo: hostRoot,
            originalCwd: cwd
        )
    }

    /// Makes the planned checkout. Setting `cancellation` stops it within one file.
    package func checkout(_ sandbox: LocalSandbox, request: DispatchRequest, cancellation: CheckoutCancellation? = nil) throws -> LocalSandbox {
        let fileManager = FileManager.default
        guard let base = ObjectID(hex: sandbox.baseSha) else {
            throw SandboxError(code: .materializeFailed, message: "planned base \(sandbox.baseSha) is not a commit id")
        }
        do {
            if fileManager.fileExists(atPath: sandbox.path) { try fileManager.removeItem(atPath: sandbox.path) }
            for directory in ["logs", "artifacts"] {
                try fileManager.createDirectory(atPath: "\(sandbox.path)/\(directory)", withIntermediateDirectories: true)
            }
            try Self.checkOut(
                sandbox.sourceRepo,
                at: base,
                into: sandbox.repoPath,
                branch: "dispatch/\(sandbox.sandboxId)",
                cancellation: cancellation
            )
        } catch {
            throw SandboxError(
                code: .materializeFailed,
                message: "cannot check out \(base) from \(sandbox.sourceRepo) into \(sandbox.repoPath): \(error)",
                underlying: error
            )
        }
        try finish(sandbox, request: request)
        return sandbox
    }

    /// A checkout of `sourceRepo`'s `base` at `repoPath`, as every sandbox (and every warm pool entry) gets it: a new
    /// repository whose `objects/info/alternates` names the host's object database, `branch` at `base` with HEAD on
    /// it, and a forced checkout (content filters only where something could configure one).
    static func checkOut(_ sourceRepo: String, at base: ObjectID, into repoPath: String, branch: String, cancellation: CheckoutCancellation?) throws {
        let host = try Repository.discover(containing: sourceRepo)
        let created = try Repository.create(at: repoPath)
        try FileManager.default.createDirectory(atPath: "\(created.objectsDir)/info", withIntermediateDirectories: true)
        try AtomicFile.write(Data("\(host.objectsDir)\n".utf8), to: "\(created.objectsDir)/info/alternates")
        let repo = try Repository(path: repoPath)
        try repo.createBranchAndSetHead(branch, at: base)
        try repo.forceCheckoutHead(filters: try repo.checkoutNeedsFilters(base), cancellation: cancellation)
    }

    /// What follows a checkout, also one taken from the warm pool: the work dir and the sandbox's metadata files.
    func finish(_ sandbox: LocalSandbox, request: DispatchRequest) throws {
        try? FileManager.default.createDirectory(atPath: sandbox.workDir, withIntermediateDirectories: true)
        try writeMetadata(sandbox, request: request)
        // The host's object database as the runner found it, out of the agent's reach: the export reads objects from
        // there and the checkout's own, never from what the checkout's `alternates` says by then.
        let host = try Repository.discover(containing: sandbox.sourceRepo)
        try AtomicFile.write(Data("\(host.objectsDir)\n".utf8), to: sandbox.hostObjectsRecord)
    }

    private func writeMetadata(_ sandbox: LocalSandbox, request: DispatchRequest) throws {
        var env = sandbox.environment
        env["DISPATCH_REQUEST_ID"] = request.requestId
        if let workflowId = request.workflowId { env["DISPATCH_WORKFLOW_ID"] = workflowId }
        if let storyId = request.storyId { env["DISPATCH_STORY_ID"] = storyId }
        let lines = env.keys.sorted().map { "\($0)=\(Self.shellQuote(env[$0]!))" }.joined(separator: "\n") + "\n"
        try AtomicFile.write(Data(lines.utf8), to: "\(sandbox.path)/.sandbox.env")
        try AtomicFile.write(try StoreJSON.encode(sandbox), to: "\(sandbox.path)/sandbox.json")
    }

    static func shellQuote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return Repository.trimSlashPublic(path) }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
