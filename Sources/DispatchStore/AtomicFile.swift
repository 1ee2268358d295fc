import Foundation

/// Writes files that other processes read so they are never seen half-written: a private temp file in the same
/// directory, fsync, rename (or link, when an existing file must win), fsync of the directory.
package enum AtomicFile {
    /// `write(_:to:replace: false)` found the file already there.
    package struct Exists: Error {}

    /// Writes `path` with `data` atomically and privately (0600), creating the parent directory (0700) if needed.
    /// With `replace: false` an existing file is left as it is and ``Exists`` is thrown.
    package static func write(_ data: Data, to path: String, replace: Bool = true) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temp = "\(directory)/.\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlink(temp) }
        }
        try data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                }
                offset += written
            }
        }
        guard fsync(fd) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        if replace {
            guard rename(temp, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            renamed = true
        } else {
            guard link(temp, path) == 0 else {
                if errno == EEXIST { throw Exists() }
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
        }
        syncDirectory(directory)
    }

    /// Makes a rename in `directory` durable.
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
