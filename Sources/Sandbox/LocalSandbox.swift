import DispatchCore
import DispatchStore
import Foundation
import Git

/// A materialised local sandbox: a clean checkout of the source repo at `baseSha`.
public struct LocalSandbox: Sendable, Codable, Equatable {
    public var sandboxId: String
    /// `<root>/<workflow>/<story>/<sandboxId>`.
    public var path: String
    /// The checkout (`<path>/repo`).
    public var repoPath: String
    /// Where the agent runs: the request's `cwd` mapped into the checkout.
    public var workDir: String
    /// The resolved full commit id.
    public var baseSha: String
    /// The host repository's working directory root.
    public var sourceRepo: String
    /// The request's original `cwd`.
    public var originalCwd: String

    public var logsDir: String { "\(path)/logs" }
    public var artifactsDir: String { "\(path)/artifacts" }

    /// The environment variables the agent gets in addition to the usual ones.
    public var environment: [String: String] {
        [
            "DISPATCH_SANDBOX_ID": sandboxId, "DISPATCH_SANDBOX_PATH": path, "DISPATCH_SANDBOX_REPO": repoPath,
            "DISPATCH_SANDBOX_WORKDIR": workDir, "DISPATCH_SANDBOX_BASE_SHA": baseSha, "DISPATCH_ORIGINAL_CWD": originalCwd,
        ]
    }

    /// The task with the sandbox preamble in front.
    public func task(wrapping task: String) -> String {
        """
        [agent-dispatch sandbox]
        You are working in an isolated sandbox: a clean checkout of \(sourceRepo) at commit \(baseSha).
        Sandbox checkout: \(repoPath)
        Working directory: \(workDir) (the request's original cwd: \(originalCwd))
        Work only inside the sandbox. Your changes (including new files and commits) are collected as a patch against the base commit.
        ---

        \(task)
        """
    }

    /// The result's `localSandbox` section.
    public func info(cleanupAfter: String? = nil) -> LocalSandboxInfo {
        LocalSandboxInfo(sandboxId: sandboxId, path: path, repoPath: repoPath, workDir: workDir, baseSha: baseSha, cleanupAfter: cleanupAfter)
    }
}

extension LocalSandbox {
    /// Rebuilds enough of a sandbox from a stored result to export its artifacts after the runner died.
    public init(abandoned info: LocalSandboxInfo) {
        self.init(
            sandboxId: info.sandboxId,
            path: info.path,
            repoPath: info.repoPath,
            workDir: info.workDir,
            baseSha: info.baseSha,
            sourceRepo: "",
            originalCwd: ""
        )
    }
}
