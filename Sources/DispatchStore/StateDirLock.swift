import Foundation

/// One `dispatch serve` per SQLite state dir (CONTRACT §3): an exclusive `flock` on `<state>/serve.lock`, held for
/// the life of the process (the kernel releases it when the process dies, however it dies). The file names the
/// holder's pid so a second serve can say who holds it.
package final class StateDirLock: Sendable {
    /// Another live process holds the state dir.
    package struct Held: Error, CustomStringConvertible {
        package var stateDir: String
        package var holderPid: Int32?
        package var description: String {
            "another dispatch serve (pid \(holderPid.map(String.init) ?? "unknown")) already serves the state dir \(stateDir)"
        }
    }

    private let fd: Int32

    /// Takes the lock or throws ``Held``; other failures (an unwritable state dir) throw POSIX errors.
    package init(stateDir: String) throws {
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = "\(stateDir)/serve.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let busy = errno == EWOULDBLOCK
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard busy else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            let text = count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : ""
            throw Held(stateDir: stateDir, holderPid: Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = fd
    }

    deinit { close(fd) }
}
