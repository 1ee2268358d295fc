import DispatchCore
import DispatchStore
import Foundation
import Git

/// Exports what the agent did in a sandbox: HEAD, touched files and one `git apply --binary`-able patch from
/// `baseSha` to the final working tree (commits, edits, deletions, mode changes, binary and untracked files).
public struct ArtifactExporter: Sendable {
    /// Largest patch kept inline in the result.
    public static let maxInlinePatchBytes = 5 * 1024 * 1024

    public init() {}

    /// Blocking; call through ``BlockingWork``. Writes `artifacts/changes.patch` and `artifacts/artifacts.json` atomically.
    public func export(_ sandbox: LocalSandbox) throws -> Artifacts {
        do {
            let repo = try Repository(path: sandbox.repoPath)
            guard let base = ObjectID(hex: sandbox.baseSha) else {
                throw SandboxError(code: .exportFailed, message: "base \(sandbox.baseSha) is not a full commit id")
            }
            let head = try repo.headCommit()
            let change = try repo.workingTreeChange(from: base)
            var touched = Set<String>()
            for entry in change.entries {
                touched.insert(entry.oldPath)
                touched.insert(entry.newPath)
            }
            if let head, head != base {
                touched.formUnion(try repo.pathsChangedByCommits(from: base, to: head))
            }
            touched.remove("")
            let patchPath = "\(sandbox.artifactsDir)/changes.patch"
            try AtomicFile.write(change.patch, to: patchPath)
            let inline = change.patch.count <= Self.maxInlinePatchBytes
            let artifacts = Artifacts(
                headSha: head?.hex, touchedFiles: touched.sorted(),
                patch: inline ? String(decoding: change.patch, as: UTF8.self) : nil, patchPath: patchPath,
                patchTruncated: inline ? nil : true)
            try AtomicFile.write(try StoreJSON.encode(artifacts), to: "\(sandbox.artifactsDir)/artifacts.json")
            return artifacts
        } catch let error as SandboxError {
            throw error
        } catch {
            throw SandboxError(code: .exportFailed, message: "cannot export artifacts from \(sandbox.repoPath): \(error)", underlying: error)
        }
    }
}
