import DispatchCore
import Foundation

/// Takes group and other permission bits off everything the runner keeps (CONTRACT §6), for state dirs created
/// before the runner worked with umask 077. Checked-out repositories inside sandboxes are the agents' and are
/// left as they are.
package enum PrivateState {
    /// Tightens the state dir, the inbox dir and the sandbox root (each only when it exists); returns how many
    /// entries changed. Problems are skipped: this is hygiene, never a reason not to start.
    @discardableResult
    package static func tighten(_ configuration: DispatchConfiguration) -> Int {
        var changed = 0
        for root in Set([configuration.stateDir, configuration.inboxDir, configuration.sandboxRoot]) {
            changed += tighten(tree: root)
        }
        return changed
    }

    /// Tightens `root` and everything below it, not descending into a sandbox's `repo/` checkout.
    static func tighten(tree root: String) -> Int {
        var changed = 0
        var pending = [root]
        while let directory = pending.popLast() {
            guard let stripped = strip(directory, to: 0o700) else { continue }
            changed += stripped
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            let isSandbox = names.contains("sandbox.json")
            for name in names {
                let path = "\(directory)/\(name)"
                var info = stat()
                guard lstat(path, &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    if isSandbox, name == "repo" { continue }
                    pending.append(path)
                case S_IFREG:
                    if info.st_mode & 0o077 != 0, chmod(path, info.st_mode & 0o700) == 0 { changed += 1 }
                default:
                    continue
                }
            }
        }
        return changed
    }

    /// Removes group/other bits of `path`; `nil` when it is not there, else 1 if it changed and 0 if not.
    private static func strip(_ path: String, to mask: mode_t) -> Int? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return nil }
        guard info.st_mode & 0o077 != 0 else { return 0 }
        return chmod(path, info.st_mode & mask) == 0 ? 1 : 0
    }
}
