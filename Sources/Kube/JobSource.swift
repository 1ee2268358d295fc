import DispatchCore
import Git

/// Where a k8s Job clones from (CONTRACT §1): `repoUrl`/`branch`/`baseSha` from the request, else the `origin`
/// remote, current branch and HEAD of the repo containing `cwd`.
package struct JobSource: Sendable, Equatable {
    package var repoURL: String
    package var branch: String?
    package var baseSha: String?

    /// Blocking (libgit2) when the request names no `repoUrl`.
    package static func resolve(_ request: DispatchRequest, defaultCwd: String) throws -> JobSource {
        if let repoURL = request.repoUrl { return JobSource(repoURL: repoURL, branch: request.branch, baseSha: request.baseSha) }
        let cwd = request.cwd ?? defaultCwd
        guard let repo = try? Repository.discover(containing: cwd), let url = repo.remoteURL("origin") else {
            throw JobSourceError(description: "invalid repoUrl: not given, and \(cwd) is not in a git repository with an origin remote")
        }
        guard !HostileValueRules.urlHasCredentials(url) else {
            // The URL is not repeated: it holds a secret.
            throw JobSourceError(
                description: "invalid repoUrl: the origin remote of \(repo.workdir ?? cwd) carries credentials in its URL; "
                    + "remove them and give the Jobs a Secret named by DISPATCH_K8S_GIT_SECRET"
            )
        }
        let base = try? request.baseSha.map { try repo.resolveCommit($0).hex } ?? repo.headCommit()?.hex
        return JobSource(repoURL: url, branch: request.branch ?? repo.currentBranch(), baseSha: base ?? request.baseSha)
    }
}

/// No source for the Job could be determined.
package struct JobSourceError: Error, Sendable, CustomStringConvertible {
    package var description: String
}
