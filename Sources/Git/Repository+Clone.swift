import CGit2

extension Repository {
    /// Clones `url` (a path, `file://`, or a remote libgit2 supports) into `path` without checking files out:
    /// a sandbox is then materialised from it at the wanted commit.
    public static func cloneWithoutCheckout(from url: String, to path: String) throws(GitError) -> Repository {
        Libgit2.ensureInitialized()
        var options = git_clone_options()
        try check(git_clone_options_init(&options, UInt32(GIT_CLONE_OPTIONS_VERSION)), "prepare clone")
        options.checkout_opts.checkout_strategy = GIT_CHECKOUT_NONE.rawValue
        var repo: OpaquePointer?
        try check(git_clone(&repo, url, path, &options), "clone \(url)")
        return Repository(wrapping: repo!)
    }
}
