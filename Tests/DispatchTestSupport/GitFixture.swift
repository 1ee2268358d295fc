import Foundation

/// Real git repositories in temp dirs, driven by the `git` CLI (an independent check on what libgit2 does).
package enum GitFixture {
    static let environment = [
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid", "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid", "GIT_CONFIG_NOSYSTEM": "1", "HOME": NSTemporaryDirectory(),
        // Sandbox checkouts belong to their agents' uids; the tests read them as root, as the runner does.
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*",
    ]

    /// Runs git in `cwd`; throws with its stderr on a non-zero exit.
    @discardableResult
    package static func git(_ arguments: [String], in cwd: String) throws -> String {
        let result = try CommandRunner.run("/usr/bin/git", arguments, environment: environment, cwd: cwd)
        guard result.exitCode == 0 else {
            throw GitFixtureError(message: "git \(arguments.joined(separator: " ")) failed in \(cwd): \(result.stderr)")
        }
        return result.stdout
    }

    /// Creates a repository at `path` with `files` committed on `main`; returns the commit id.
    @discardableResult
    package static func makeRepo(at path: String, files: [String: String]) throws -> String {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try git(["init", "-q", "-b", "main"], in: path)
        try write(files, in: path)
        try git(["add", "-A"], in: path)
        try git(["commit", "-q", "-m", "initial"], in: path)
        return try head(path)
    }

    /// Writes files (creating directories).
    package static func write(_ files: [String: String], in path: String) throws {
        for (name, content) in files {
            let file = "\(path)/\(name)"
            try FileManager.default.createDirectory(
                atPath: (file as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try content.write(toFile: file, atomically: true, encoding: .utf8)
        }
    }

    /// The full id of HEAD.
    package static func head(_ path: String) throws -> String {
        try git(["rev-parse", "HEAD"], in: path).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The tree id of the whole working directory, untracked files included (uses a throwaway index).
    package static func workingTreeHash(_ path: String) throws -> String {
        let index = NSTemporaryDirectory() + "index-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: index) }
        var env = environment
        env["GIT_INDEX_FILE"] = index
        for args in [["add", "-A"], ["write-tree"]] {
            let result = try CommandRunner.run("/usr/bin/git", args, environment: env, cwd: path)
            guard result.exitCode == 0 else { throw GitFixtureError(message: "git \(args) failed: \(result.stderr)") }
            if args == ["write-tree"] { return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        return ""
    }
}

package struct GitFixtureError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}
