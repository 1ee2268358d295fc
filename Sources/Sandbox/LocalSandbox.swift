import DispatchCore
import DispatchStore
import Foundation
import Git

/// A materialised local sandbox: a clean checkout of the source repo at `baseSha`.
package struct LocalSandbox: Sendable, Codable, Equatable {
    package var sandboxId: String
    /// `<root>/<workflow>/<story>/<sandboxId>`.
    package var path: String
    /// The checkout (`<path>/repo`).
    package var repoPath: String
    /// Where the agent runs: the request's `cwd` mapped into the checkout.
    package var workDir: String
    /// The resolved full commit id.
    package var baseSha: String
    /// The host repository's working directory root.
    package var sourceRepo: String
    /// The request's original `cwd`.
    package var originalCwd: String

    package var logsDir: String { "\(path)/logs" }
    /// Where the runner records the host's object database (`host-objects`, the runner's own file).
    package var hostObjectsRecord: String { "\(path)/host-objects" }

    /// The object databases the export may read besides the checkout's own: the host's as the runner recorded it at
    /// the checkout, else (a sandbox made before the record) as the host repository says now, else none — never what
    /// the checkout's own `alternates` says.
    package var hostObjectDatabases: [String] {
        if let text = try? String(contentsOfFile: hostObjectsRecord, encoding: .utf8) {
            let path = text.trimmingCharacters(in: .newlines)
            if !path.isEmpty { return [path] }
        }
        guard !sourceRepo.isEmpty, let host = try? Repository.discover(containing: sourceRepo) else { return [] }
        return [host.objectsDir]
    }
    package var artifactsDir: String { "\(path)/artifacts" }

    /// The environment variables the agent gets in addition to the usual ones.
    package var environment: [String: String] {
        [
            "DISPATCH_SANDBOX_ID": sandboxId, "DISPATCH_SANDBOX_PATH": path, "DISPATCH_SANDBOX_REPO": repoPath,
            "DISPATCH_SANDBOX_WORKDIR": workDir, "DISPATCH_SANDBOX_BASE_SHA": baseSha, "DISPATCH_ORIGINAL_CWD": originalCwd,
        ]
    }

    /// The task with the sandbox preamble in front.
    package func task(wrapping task: String) -> String {
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
    package func info(cleanupAfter: String? = nil) -> LocalSandboxInfo {
        LocalSandboxInfo(sandboxId: sandboxId, path: path, repoPath: repoPath, workDir: workDir, baseSha: baseSha, cleanupAfter: cleanupAfter)
    }
}

extension LocalSandbox {
    /// Rebuilds a sandbox from a stored result to go on with a run a dead runner left: the host repository and the
    /// original cwd are found again from the request (the agent's task and its namespaces name them).
    package init(adopting info: LocalSandboxInfo, request: DispatchRequest, defaultCwd: String) {
        let cwd = SandboxMaterializer.realPath(request.cwd ?? defaultCwd)
        let host = (try? Repository.discover(containing: cwd))?.workdir.map(SandboxMaterializer.realPath)
        self.init(
            sandboxId: info.sandboxId,
            path: info.path,
            repoPath: info.repoPath,
            workDir: info.workDir,
            baseSha: info.baseSha,
            sourceRepo: host ?? "",
            originalCwd: cwd
        )
    }

    /// Rebuilds enough of a sandbox from a stored result to export its artifacts after the runner died.
    package init(abandoned info: LocalSandboxInfo) {
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
