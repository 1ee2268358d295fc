import CGit2
import Foundation

extension Repository {
    /// Whether checking out `commit` could apply any content filter (CRLF, ident, filter drivers).
    ///
    /// libgit2 looks up attributes for every file it writes, resolving real paths each time; on large trees that
    /// costs more than the checkout itself. When nothing could configure a filter — no `.gitattributes` anywhere
    /// in the tree, no `info/attributes`, no global or system attributes file, no `core.attributesFile`, and
    /// `core.autocrlf` unset or false — every file's filter list is empty and the lookups can be skipped.
    package func checkoutNeedsFilters(_ commit: ObjectID) throws(GitError) -> Bool {
        var configured = false
        var config: OpaquePointer?
        try check(git_repository_config_snapshot(&config, handle), "read the configuration of \(gitDir)")
        defer { git_config_free(config) }
        var autocrlf: Int32 = 0
        let rc = git_config_get_bool(&autocrlf, config, "core.autocrlf")
        if rc == 0 && autocrlf != 0 { configured = true }
        if rc < 0 && rc != GIT_ENOTFOUND.rawValue { configured = true }  // "input" is not a bool, and means conversion
        var path: UnsafePointer<CChar>?
        if git_config_get_string(&path, config, "core.attributesFile") == 0 { configured = true }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
        let xdg = ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"] ?? "\(home)/.config"
        for file in ["\(commonDir)/info/attributes", "\(xdg)/git/attributes", "/etc/gitattributes"]
        where FileManager.default.fileExists(atPath: file) {
            configured = true
        }
        if configured { return true }
        return try treeContainsAttributesFile(commit)
    }

    private func treeContainsAttributesFile(_ commit: ObjectID) throws(GitError) -> Bool {
        let tree = try tree(of: commit)
        var found = false
        let rc = withUnsafeMutablePointer(to: &found) { pointer in
            git_tree_walk(
                tree.pointer,
                GIT_TREEWALK_PRE,
                { _, entry, payload in
                    guard let entry, let name = git_tree_entry_name(entry), strcmp(name, ".gitattributes") == 0 else { return 0 }
                    payload!.assumingMemoryBound(to: Bool.self).pointee = true
                    return -1  // stop the walk
                },
                pointer
            )
        }
        if rc < 0 && !found { try check(rc, "walk the tree of \(commit)") }
        return found
    }
}
