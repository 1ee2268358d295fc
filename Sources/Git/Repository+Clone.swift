import CGit2

/// A username and password (or token) for cloning over HTTP(S), given to libgit2's credential callback and never
/// put into the URL.
package struct GitCredentials: Sendable, Equatable {
    package var username: String
    package var password: String

    package init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

extension Repository {
    /// Clones `url` into `path` (objects and refs, no working tree), authenticating with `credentials` when the
    /// server asks for them. Credentials are offered once: a server that refuses them fails the clone.
    package static func cloneWithoutCheckout(from url: String, to path: String, credentials: GitCredentials? = nil) throws(GitError) -> Repository {
        Libgit2.ensureInitialized()
        var options = git_clone_options()
        try check(git_clone_options_init(&options, UInt32(GIT_CLONE_OPTIONS_VERSION)), "prepare clone")
        options.checkout_opts.checkout_strategy = GIT_CHECKOUT_NONE.rawValue
        // Offered only to the host of `url` itself, and redirects are not followed: a redirect or another host never
        // gets the credentials.
        options.fetch_opts.follow_redirects = GIT_REMOTE_REDIRECT_NONE
        let offer = CredentialOffer(credentials, url: url)
        let payload = Unmanaged.passRetained(offer)
        defer { payload.release() }
        options.fetch_opts.callbacks.payload = payload.toOpaque()
        options.fetch_opts.callbacks.credentials = { out, askingURL, usernameFromURL, allowed, payload in
            guard let out, let payload else { return GIT_PASSTHROUGH.rawValue }
            let offer = Unmanaged<CredentialOffer>.fromOpaque(payload).takeUnretainedValue()
            guard let credentials = offer.credentials, allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0,
                let askingURL, offer.mayAnswer(String(cString: askingURL))
            else {
                return GIT_PASSTHROUGH.rawValue
            }
            guard !offer.offered else { return GIT_EAUTH.rawValue }
            offer.offered = true
            _ = usernameFromURL
            return git_credential_userpass_plaintext_new(out, credentials.username, credentials.password)
        }
        var repo: OpaquePointer?
        try check(git_clone(&repo, url, path, &options), "clone \(url)")
        return Repository(wrapping: repo!)
    }
}

/// What the credential callback may offer, and whether it already has (libgit2 asks again after a refusal).
/// Used only on the thread running `git_clone`, which owns it for the call.
private final class CredentialOffer {
    let credentials: GitCredentials?
    let origin: (scheme: String, host: String)?
    var offered = false

    init(_ credentials: GitCredentials?, url: String) {
        self.credentials = credentials
        origin = Self.origin(of: url)
    }

    /// Only the clone URL's own scheme and host, and only over https (or plain http to this machine, for tests).
    func mayAnswer(_ url: String) -> Bool {
        guard let origin, let asking = Self.origin(of: url), asking == origin else { return false }
        return origin.scheme == "https" || (origin.scheme == "http" && ["127.0.0.1", "localhost", "[::1]"].contains(origin.host))
    }

    static func origin(of url: String) -> (scheme: String, host: String)? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        var authority = url[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        let host: Substring
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            host = authority[...close]
        } else {
            host = authority.prefix { $0 != ":" }
        }
        return (scheme, host.lowercased())
    }
}
