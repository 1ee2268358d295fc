import AgentProcess
import DispatchCore
import DispatchStore
import Foundation
import Git

/// Exports what the agent did in a sandbox: HEAD, touched files and one `git apply --binary`-able patch from
/// `baseSha` to the final working tree (commits, edits, deletions, mode changes, binary and untracked files).
package struct ArtifactExporter: Sendable {
    /// Largest patch kept inline in the result.
    package static let maxInlinePatchBytes = 5 * 1024 * 1024

    /// Largest file (either side) put into the patch; larger ones are listed in `omittedFromPatch`.
    package let maxPatchFileBytes: Int64

    package init(maxPatchFileBytes: Int64 = 64 << 20) {
        self.maxPatchFileBytes = maxPatchFileBytes
    }

    /// Most paths listed in `touchedFiles`; the rest are counted (`touchedFilesCount`, `touchedFilesTruncated`).
    package static let maxTouchedFiles = 10_000

    /// Blocking; call through ``BlockingWork``. Writes `artifacts/changes.patch` and `artifacts/artifacts.json`
    /// atomically. Trusts nothing the agent left in the checkout (``Repository/openUntrusted(checkout:)``); once
    /// `cancellation` is set it stops within one file and writes nothing more.
    package func export(_ sandbox: LocalSandbox, cancellation: CheckoutCancellation? = nil) throws -> Artifacts {
        do {
            let repo = try Repository.openUntrusted(checkout: sandbox.repoPath, alternates: sandbox.hostObjectDatabases)
            guard let base = ObjectID(hex: sandbox.baseSha) else {
                throw SandboxError(code: .exportFailed, message: "base \(sandbox.baseSha) is not a full commit id")
            }
            let head = try repo.headCommit()
            let patchPath = "\(sandbox.artifactsDir)/changes.patch"
            try FileManager.default.createDirectory(atPath: sandbox.artifactsDir, withIntermediateDirectories: true)
            Self.removeLeftTempFiles(in: sandbox.artifactsDir)
            // Streamed to a private temp file, then renamed: readers never see half a patch, and memory stays flat.
            let temp = "\(sandbox.artifactsDir)/.changes.patch.tmp-\(getpid())"
            let change: WorkingTreeChange
            var touched = Set<String>()
            do {
                change = try repo.workingTreeChange(from: base, writingPatchTo: temp, maxFileBytes: maxPatchFileBytes, cancellation: cancellation)
                for entry in change.entries {
                    touched.insert(entry.oldPath)
                    touched.insert(entry.newPath)
                }
                for omitted in change.omitted { touched.insert(omitted.path) }
                if let head, head != base {
                    touched.formUnion(try repo.pathsChangedByCommits(from: base, to: head, cancellation: cancellation))
                }
                let renamed = try Self.whileLive(cancellation) { rename(temp, patchPath) == 0 }
                guard renamed else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            } catch {
                unlink(temp)
                throw error
            }
            touched.remove("")
            let inline = change.patchBytes <= Int64(Self.maxInlinePatchBytes)
            let omitted = change.omitted.prefix(Self.maxTouchedFiles).map {
                Artifacts.OmittedFile(path: $0.path, bytes: $0.bytes, reason: "larger than \(maxPatchFileBytes) bytes")
            }
            let listed = touched.count > Self.maxTouchedFiles ? Array(touched.sorted().prefix(Self.maxTouchedFiles)) : touched.sorted()
            var artifacts = Artifacts(
                headSha: head?.hex,
                touchedFiles: listed,
                patch: inline ? LogFile.read(patchPath) : nil,
                patchPath: patchPath,
                patchTruncated: inline ? nil : true,
                omittedFromPatch: omitted.isEmpty ? nil : Array(omitted)
            )
            if touched.count > Self.maxTouchedFiles {
                artifacts.touchedFilesCount = touched.count
                artifacts.touchedFilesTruncated = true
            }
            let encoded = try StoreJSON.encode(artifacts)
            try Self.whileLive(cancellation) { try AtomicFile.write(encoded, to: "\(sandbox.artifactsDir)/artifacts.json") }
            return artifacts
        } catch let error as SandboxError {
            throw error
        } catch {
            throw SandboxError(code: .exportFailed, message: "cannot export artifacts from \(sandbox.repoPath): \(error)", underlying: error)
        }
    }

    /// Runs a final write unless the budget has ended (then throws): nothing is written after the terminal result.
    static func whileLive<T>(_ cancellation: CheckoutCancellation?, _ body: () throws -> T) throws -> T {
        guard let cancellation else { return try body() }
        guard let value = try cancellation.whileLive(body) else {
            throw SandboxError(code: .timedOut, message: "artifact export stopped: the budget ended")
        }
        return value
    }

    /// Temp patches an export killed midway (kill -9) left behind.
    static func removeLeftTempFiles(in directory: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(".changes.patch.tmp-") {
            unlink("\(directory)/\(name)")
        }
    }
}
