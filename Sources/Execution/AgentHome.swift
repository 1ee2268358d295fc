import AgentProcess
import DispatchCore
import Foundation

/// An agent's own `HOME` for one run (CONTRACT §7): never the operator's. It holds copies of the CLIs' credential
/// and config files from the agent home (`DISPATCH_AGENT_HOME`, default the runner's `HOME`), and whatever the CLI
/// writes (its session transcript), which stays with the run and goes with it. A credential file the CLI refreshed
/// is written back to the agent home when it is newer (OAuth refresh tokens rotate: a lost refresh would log the
/// operator out).
package struct AgentHome: Sendable, Equatable {
    /// The run's home directory.
    package let path: String
    /// Where the credential and config files come from and go back to.
    package let source: String
    /// Whose files the run gets.
    package let tool: AgentTool
    /// Who the run's agent runs as, given the home once it is provisioned; `nil`: the runner.
    package var owner: AgentUser?

    /// Each CLI's login and config files, relative to a home; transcripts (`~/.codex/sessions`, `~/.claude/projects`,
    /// pi's sessions) are never among them. A run gets only its own tool's.
    static func files(for tool: AgentTool) -> [String] {
        switch tool {
        case .codex: [".codex/auth.json", ".codex/config.toml"]
        case .claude: [".claude/.credentials.json", ".claude.json", ".claude/settings.json"]
        case .pi: [".pi/agent/auth.json", ".pi/agent/settings.json", ".pi/agent/models.json"]
        case .canary: []
        }
    }

    /// Of a tool's files, the login a CLI rewrites when it refreshes it, and only that: written back when newer. Files
    /// that can make a CLI run commands (`~/.claude.json`'s MCP servers, pi's `!command` keys) are never written back.
    static func credentials(for tool: AgentTool) -> [String] {
        switch tool {
        case .codex: [".codex/auth.json"]
        case .claude: [".claude/.credentials.json"]
        case .pi, .canary: []
        }
    }

    /// Largest file copied in or written back.
    static let maxFileBytes = 1 << 20

    /// The home of a run of `tool` at `path`, provisioned from `source`.
    package init(path: String, source: String, tool: AgentTool) {
        self.path = path
        self.source = source
        self.tool = tool
    }

    /// Creates the home (0700) and copies in the files the agent home has, each 0600 with the source's modification
    /// time (so a rewrite by the CLI shows as newer). A home that exists (an adopted run's) is left as it is.
    package func provision() throws {
        guard !FileManager.default.fileExists(atPath: path) else { return }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for file in Self.files(for: tool) {
            guard let data = Self.readRegularFile("\(source)/\(file)") else { continue }
            let target = "\(path)/\(file)"
            let parent = (target as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try Self.writeAtomically(data, to: target, timesOf: "\(source)/\(file)")
        }
        try FileManager.default.createDirectory(
            atPath: Self.temporaryDirectory(of: path),
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        try owner?.own(path)
    }

    /// The run's own temp dir (`TMPDIR`), inside its home: outside codex's home, which codex will not have under its
    /// temp dir.
    package static func temporaryDirectory(of home: String) -> String { "\(home)/tmp" }

    /// Writes back to the agent home each login file the run's CLI rewrote: a regular file of the run's home (never a
    /// link, nothing reached through one), newer than the agent home's copy and different from it, and a JSON object
    /// with no key the agent home's copy lacks (a refresh changes values; a new key is something else). Serialized per
    /// file, through a temp file of its own, keeping the run's modification time (a later refresh stays newer). Call
    /// once every process of the run has ended. Returns the files written back.
    @discardableResult
    package func writeBack() -> [String] {
        var written: [String] = []
        for file in Self.credentials(for: tool) {
            let own = "\(path)/\(file)"
            let theirs = "\(source)/\(file)"
            guard Self.noLinkBelow(path, in: file), let ownTime = Self.modified(own) else { continue }
            let lock = open("\(theirs).dispatch-lock", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard lock >= 0 else { continue }
            defer { close(lock) }
            _ = flock(lock, LOCK_EX)
            guard let theirTime = Self.modified(theirs), ownTime > theirTime, let data = Self.readRegularFile(own),
                let current = Self.readRegularFile(theirs), data != current, Self.onlyKnownKeys(data, comparedWith: current)
            else { continue }
            if (try? Self.writeAtomically(data, to: theirs, ownerOf: theirs, timesOf: own)) != nil { written.append(file) }
        }
        return written
    }

    /// Whether `data` is a JSON object whose top-level keys the current file has too.
    static func onlyKnownKeys(_ data: Data, comparedWith current: Data) -> Bool {
        guard let new = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let old = try? JSONSerialization.jsonObject(with: current) as? [String: Any]
        else { return false }
        return Set(new.keys).isSubset(of: Set(old.keys))
    }

    /// Whether no directory between `root` and `relative`'s file is a symbolic link.
    static func noLinkBelow(_ root: String, in relative: String) -> Bool {
        var current = root
        for part in relative.split(separator: "/").dropLast() {
            current += "/\(part)"
            var info = stat()
            guard lstat(current, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return false }
        }
        return true
    }

    /// The modification time of a regular file (not a link), in nanoseconds.
    static func modified(_ path: String) -> Int64? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }

    /// The content of a regular file of at most ``maxFileBytes``, opened without following a link.
    static func readRegularFile(_ path: String) -> Data? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size <= maxFileBytes else { return nil }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            data.append(contentsOf: buffer[0..<count])
            if data.count > maxFileBytes { return nil }
        }
        return data
    }

    /// Replaces `path` atomically with `data`, mode 0600; owned as `ownerOf` is, and with the modification time of
    /// `timesOf` (a copy that looks as old as its source), when given.
    static func writeAtomically(_ data: Data, to path: String, ownerOf: String? = nil, timesOf: String? = nil) throws {
        let temp = "\(path).dispatch-tmp-\(UUID().uuidString)"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var ok = data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                offset += n
            }
            return true
        }
        var info = stat()
        if let ownerOf, lstat(ownerOf, &info) == 0 { _ = fchown(fd, info.st_uid, info.st_gid) }
        if let timesOf, lstat(timesOf, &info) == 0 {
            var times = [info.st_atim, info.st_mtim]
            _ = futimens(fd, &times)
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(temp, path) == 0 else {
            unlink(temp)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }
}
