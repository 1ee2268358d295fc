import CBuildInfo

/// Version and build identity reported by `GET /`.
public enum ServerInfo {
    public static let version = "0.1.0"
    /// The commit baked in at build time.
    public static let gitSha = String(cString: dispatch_git_sha())
}
