import CGit2

extension Repository {
    /// Stages every file of the working tree (`git add -A`) and commits it on HEAD; returns the new commit id.
    @discardableResult
    package func commitAll(
        message: String,
        authorName: String = "agent-dispatch",
        authorEmail: String = "agent-dispatch@localhost"
    )
        throws(GitError) -> ObjectID
    {
        var index: OpaquePointer?
        try check(git_repository_index(&index, handle), "open the index of \(workdir ?? gitDir)")
        defer { git_index_free(index) }
        var pathspec = git_strarray(strings: nil, count: 0)
        try check(git_index_add_all(index, &pathspec, GIT_INDEX_ADD_DEFAULT.rawValue, nil, nil), "stage the working tree")
        try check(git_index_update_all(index, &pathspec, nil, nil), "stage deletions")
        try check(git_index_write(index), "write the index")
        var treeId = git_oid()
        try check(git_index_write_tree(&treeId, index), "write the tree")
        var tree: OpaquePointer?
        try check(git_tree_lookup(&tree, handle, &treeId), "look up the new tree")
        defer { git_tree_free(tree) }
        var signature: UnsafeMutablePointer<git_signature>?
        try check(git_signature_now(&signature, authorName, authorEmail), "make a signature")
        defer { git_signature_free(signature) }
        var parents: [OpaquePointer?] = []
        defer { for parent in parents { git_commit_free(parent) } }
        if let head = try headCommit() {
            var oid = head.raw
            var parent: OpaquePointer?
            try check(git_commit_lookup(&parent, handle, &oid), "look up HEAD")
            parents.append(parent)
        }
        var commitId = git_oid()
        let rc = parents.withUnsafeMutableBufferPointer { buffer in
            git_commit_create(&commitId, handle, "HEAD", signature, signature, nil, message, tree, buffer.count, buffer.baseAddress)
        }
        try check(rc, "commit in \(workdir ?? gitDir)")
        return ObjectID(commitId)
    }
}
