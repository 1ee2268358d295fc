import DispatchCore
import DispatchStore
import Foundation
import Git
import Logging
import Synchronization

/// Ready checkouts, per repository, at the baseSha most recently asked for there (`DISPATCH_WARM_SANDBOXES`): a
/// sandbox request at that commit takes one by renaming its `repo/` into place, so no checkout is on its critical
/// path; the pool refills in the background, one checkout at a time per repository.
///
/// An entry is `<sandbox root>/.warm/<id>/repo`, made exactly as a sandbox's own checkout is (its own object
/// directory with the host's as alternate, a branch at the commit, HEAD on it, a forced checkout), first under
/// `<id>.partial` and renamed whole when done, and registered as a `warm` sandbox row, so the janitor and
/// `dispatch sandboxes list` know it. A claim renames the checkout (files keep their inodes and times, so the index
/// stays true and `git status` clean), puts the sandbox's branch in place of the entry's, and marks the row removed.
/// Entries of a commit no longer wanted are removed; a `serve` that starts removes what an earlier one left.
///
/// The removals and refills run in ``run()`` (under `serve`, in the dispatch service's task group): a claim or a
/// change of the wanted commit only hands them the work.
package final class WarmPool: Sendable {
    /// How many ready checkouts each repository keeps.
    package let size: Int
    /// `<sandbox root>/.warm`.
    package let root: String
    let registry: SandboxRegistry?
    let logger: Logger
    private let state = Mutex(State())
    /// The pool's background work, for ``run()``.
    private let work: AsyncStream<Work>
    private let workInput: AsyncStream<Work>.Continuation

    /// What ``run()`` does: drop entries (their checkouts removed, their rows marked), or refill a repository.
    private enum Work: Sendable {
        case drop([Entry], removeFiles: Bool)
        case refill(String)
    }

    package struct Entry: Sendable, Equatable {
        var id: String
        var path: String
        var baseSha: String
        var repoPath: String { "\(path)/repo" }
    }

    private struct State {
        /// The commit each repository (its working directory root) last asked for.
        var wanted: [String: String] = [:]
        /// Repositories, least recently asked for first: beyond ``WarmPool/maxRepositories`` the first goes.
        var recent: [String] = []
        var ready: [String: [Entry]] = [:]
        /// Repositories whose refill is under way.
        var filling: Set<String> = []
    }

    /// A pool of `size` checkouts per repository under `sandboxRoot`; whatever an earlier process left there goes.
    package init(size: Int, sandboxRoot: String, registry: SandboxRegistry?, logger: Logger) {
        self.size = size
        self.root = "\(sandboxRoot)/.warm"
        self.registry = registry
        self.logger = logger
        (work, workInput) = AsyncStream.makeStream(of: Work.self)
        try? FileManager.default.removeItem(atPath: root)
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Ready checkouts of `sourceRepo` at `baseSha` (for tests and `GET /`).
    package func readyCount(sourceRepo: String, baseSha: String) -> Int {
        state.withLock { $0.ready[sourceRepo, default: []].filter { $0.baseSha == baseSha }.count }
    }

    /// Takes a ready checkout of `sourceRepo` at `baseSha`, if there is one.
    func take(sourceRepo: String, baseSha: String) -> Entry? {
        state.withLock { state in
            guard let index = state.ready[sourceRepo]?.firstIndex(where: { $0.baseSha == baseSha }) else { return nil }
            return state.ready[sourceRepo]?.remove(at: index)
        }
    }

    /// Moves a ready checkout into `sandbox` (its `repo/`) with the sandbox's branch; `nil` when there is none
    /// (or it could not be moved: the caller checks out as usual). The entry returned is out of the pool; its row
    /// is the caller's to update (``forget(_:)``). Blocking; cheap (renames and two ref writes).
    package func claim(into sandbox: LocalSandbox) -> Entry? {
        guard let base = ObjectID(hex: sandbox.baseSha), let entry = take(sourceRepo: sandbox.sourceRepo, baseSha: sandbox.baseSha)
        else { return nil }
        let fileManager = FileManager.default
        do {
            if fileManager.fileExists(atPath: sandbox.path) { try fileManager.removeItem(atPath: sandbox.path) }
            for directory in ["logs", "artifacts"] {
                try fileManager.createDirectory(atPath: "\(sandbox.path)/\(directory)", withIntermediateDirectories: true)
            }
            guard rename(entry.repoPath, sandbox.repoPath) == 0 else {
                throw SandboxError(code: .materializeFailed, message: "cannot move \(entry.repoPath): \(String(cString: strerror(errno)))")
            }
            let repo = try Repository(path: sandbox.repoPath)
            try repo.createBranchAndSetHead("dispatch/\(sandbox.sandboxId)", at: base)
            try repo.deleteBranch(Self.branch(entry.id))
        } catch {
            logger.warning("a warm checkout could not be claimed; checking out afresh", metadata: ["error": "\(error)"])
            try? fileManager.removeItem(atPath: entry.path)
            workInput.yield(.drop([entry], removeFiles: false))
            return nil
        }
        try? fileManager.removeItem(atPath: entry.path)
        return entry
    }

    /// A sandbox request of `sourceRepo` at `baseSha` was made: that commit is the one to keep checkouts of there.
    /// Drops the entries of another commit and refills in the background.
    package func wanted(sourceRepo: String, baseSha: String) {
        let (stale, start) = state.withLock { state -> ([Entry], Bool) in
            state.wanted[sourceRepo] = baseSha
            state.recent.removeAll { $0 == sourceRepo }
            state.recent.append(sourceRepo)
            var stale: [Entry] = []
            // A bounded pool: the repositories asked for longest ago give theirs up (a refill under way stops).
            while state.recent.count > Self.maxRepositories {
                let oldest = state.recent.removeFirst()
                state.wanted[oldest] = nil
                stale += state.ready.removeValue(forKey: oldest) ?? []
            }
            let all = state.ready[sourceRepo, default: []]
            state.ready[sourceRepo] = all.filter { $0.baseSha == baseSha }
            let start = !state.filling.contains(sourceRepo) && state.ready[sourceRepo, default: []].count < size
            if start { state.filling.insert(sourceRepo) }
            return (stale + all.filter { $0.baseSha != baseSha }, start)
        }
        if !stale.isEmpty { workInput.yield(.drop(stale, removeFiles: true)) }
        if start { workInput.yield(.refill(sourceRepo)) }
    }

    /// Does the pool's removals and refills, each as a child task, until the calling task is cancelled.
    package func run() async {
        await withDiscardingTaskGroup { group in
            for await item in work {
                group.addTask {
                    switch item {
                    case .drop(let entries, let removeFiles):
                        for entry in entries {
                            if removeFiles { try? FileManager.default.removeItem(atPath: entry.path) }
                            await self.forget(entry)
                        }
                    case .refill(let sourceRepo): await self.refill(sourceRepo)
                    }
                }
            }
        }
    }

    /// Makes checkouts of the wanted commit until there are `size`, or until another commit is wanted. Each is
    /// registered before it can be claimed.
    private func refill(_ sourceRepo: String) async {
        while true {
            let sha = state.withLock { state -> String? in
                // Stopped with the service: a shutdown does not wait for checkouts nobody will claim.
                guard !Task.isCancelled, let sha = state.wanted[sourceRepo], state.ready[sourceRepo, default: []].count < size else {
                    state.filling.remove(sourceRepo)
                    return nil
                }
                return sha
            }
            guard let sha else { return }
            do {
                let cancellation = CheckoutCancellation()
                let entry = try await BlockingWork.run("warm checkout", timeout: Self.checkoutLimit, cancellation: cancellation) { [self] in
                    try make(sourceRepo: sourceRepo, baseSha: sha, cancellation: cancellation)
                }
                await record(entry, state: .warm)
                let kept = state.withLock { state -> Bool in
                    guard state.wanted[sourceRepo] == sha else { return false }
                    state.ready[sourceRepo, default: []].append(entry)
                    return true
                }
                if !kept {
                    try? FileManager.default.removeItem(atPath: entry.path)
                    await forget(entry)
                }
            } catch {
                logger.warning("cannot make a warm checkout", metadata: ["repo": "\(sourceRepo)", "error": "\(error)"])
                state.withLock { _ = $0.filling.remove(sourceRepo) }
                return
            }
        }
    }

    /// One checkout of `sourceRepo` at `baseSha`, made under `<id>.partial` and renamed into place when whole.
    func make(sourceRepo: String, baseSha: String, cancellation: CheckoutCancellation? = nil) throws -> Entry {
        guard let base = ObjectID(hex: baseSha) else { throw SandboxError(code: .materializeFailed, message: "\(baseSha) is not a commit id") }
        let id = "warm-\(UUID().uuidString.prefix(12).lowercased())"
        let partial = "\(root)/\(id).partial"
        let entry = Entry(id: id, path: "\(root)/\(id)", baseSha: baseSha)
        do {
            try SandboxMaterializer.checkOut(sourceRepo, at: base, into: "\(partial)/repo", branch: Self.branch(id), cancellation: cancellation)
            guard Foundation.rename(partial, entry.path) == 0 else {
                throw SandboxError(code: .materializeFailed, message: "cannot rename \(partial): \(String(cString: strerror(errno)))")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        return entry
    }

    static func branch(_ id: String) -> String { "dispatch/\(id)" }

    /// The entry left the pool (claimed or dropped): its row says so.
    func forget(_ entry: Entry) async { await record(entry, state: .removed) }

    private func record(_ entry: Entry, state: SandboxRecord.State) async {
        guard let registry else { return }
        let stamp = ISO8601.string(Date())
        let row = SandboxRecord(
            sandboxId: entry.id,
            requestId: "",
            state: state,
            path: entry.path,
            repoPath: entry.repoPath,
            workDir: entry.repoPath,
            baseSha: entry.baseSha,
            createdAt: stamp,
            updatedAt: stamp,
            cleanupAfter: ISO8601.string(Date().addingTimeInterval(Self.lifetime)),
            replica: registry.replica
        )
        do {
            try await registry.store.saveSandbox(row)
        } catch {
            logger.warning("cannot record a warm checkout", metadata: ["sandbox.id": "\(entry.id)", "error": "\(error)"])
        }
    }

    /// The longest one warm checkout may take; it is stopped (within one file) on the service's shutdown too.
    static let checkoutLimit: Duration = .seconds(3600)

    /// How many repositories the pool keeps checkouts of at once (so at most `size` × this many checkouts).
    package static let maxRepositories = 8

    /// The `cleanupAfter` a warm row shows (the pool, not the janitor, drops its entries: when their commit is no
    /// longer the one wanted, or when a `serve` starts).
    static let lifetime: TimeInterval = 6 * 3600
}
