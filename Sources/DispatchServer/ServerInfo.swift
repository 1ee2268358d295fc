import CBuildInfo

/// Version and build identity reported by `GET /`.
package enum ServerInfo {
    package static let version = "0.1.0"
    /// The commit baked in at build time.
    package static let gitSha = String(cString: dispatch_git_sha())
}
