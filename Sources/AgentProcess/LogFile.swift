import Foundation

/// Reading captured output files.
package enum LogFile {
    /// The last `maxBytes` of the file at `path` as text (invalid UTF-8 replaced; a split first character dropped).
    package static func tail(_ path: String, maxBytes: Int) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd() else { return "" }
        let start = size > UInt64(maxBytes) ? size - UInt64(maxBytes) : 0
        try? handle.seek(toOffset: start)
        // Exactly the window measured, never "to EOF": a writer appending at GB/s would keep moving EOF away.
        var data = (try? handle.read(upToCount: Int(size - start))) ?? Data()
        if start > 0 {
            // Drop UTF-8 continuation bytes cut from their lead byte.
            let skip = data.prefix(3).prefix { $0 & 0xC0 == 0x80 }.count
            data = data.dropFirst(skip)
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The whole file as text, or empty.
    package static func read(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Finds executables the way `execvp` would, but before spawning, so a missing one is a clear error.
package enum ExecutableLocator {
    /// The absolute path of `program` (a path is checked as is; a bare name is searched in `searchPath`).
    package static func locate(_ program: String, searchPath: String?) -> String? {
        if program.contains("/") {
            return access(program, X_OK) == 0 && !isDirectory(program) ? program : nil
        }
        for directory in (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0, !isDirectory(candidate) { return candidate }
        }
        return nil
    }

    private static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }
}
