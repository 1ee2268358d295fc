import Foundation

/// bubblewrap's start-up self-check costs a process start in namespaces (6–14 ms here) on every `dispatch run`; a
/// pass is remembered in the state dir for as long as nothing it depends on changes: the same boot, the same `bwrap`
/// (path, size, modification time), the same user, the same user-namespace settings of the kernel and the same
/// options checked. A failure is
/// never remembered: it is checked again each time, and says why.
enum IsolationCheckCache {
    /// What a remembered pass holds for.
    struct Key: Codable, Equatable {
        var bootId: String
        var bwrap: String
        var size: Int64
        var modifiedNs: Int64
        var uid: UInt32
        var userNamespaces: String
        /// The bwrap options the check ran with: a release that adds one (a namespace) checks again.
        var options: String
    }

    static func file(in directory: String) -> String { "\(directory)/isolation-check.json" }

    /// The key for `bwrap` now, or `nil` when part of it cannot be read (then nothing is remembered).
    static func key(_ bwrap: String) -> Key? {
        var info = stat()
        guard stat(bwrap, &info) == 0, let boot = read("/proc/sys/kernel/random/boot_id") else { return nil }
        let settings = [
            "/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone",
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        ]
        .map { read($0) ?? "-" }.joined(separator: " ")
        return Key(
            bootId: boot,
            bwrap: bwrap,
            size: Int64(info.st_size),
            modifiedNs: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
            uid: geteuid(),
            userNamespaces: settings,
            options: Bubblewrap.selfCheckArguments.joined(separator: " ")
        )
    }

    /// Whether a pass of `bwrap` is remembered in `directory` and still holds.
    static func passed(_ bwrap: String, in directory: String) -> Bool {
        guard let now = key(bwrap), let data = FileManager.default.contents(atPath: file(in: directory)),
            let remembered = try? JSONDecoder().decode(Key.self, from: data)
        else { return false }
        return remembered == now
    }

    /// Remembers a pass of `bwrap` in `directory` (written whole and private; a failure to write is only a miss).
    static func remember(_ bwrap: String, in directory: String) {
        guard let now = key(bwrap), let data = try? JSONEncoder().encode(now) else { return }
        // The state dir may not be there yet (a first `dispatch run`): made private, as the runner makes it.
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let target = file(in: directory)
        let temporary = "\(target).\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else { return }
        if rename(temporary, target) != 0 { unlink(temporary) }
    }

    private static func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
