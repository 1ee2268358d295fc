import Foundation

/// How agent processes are contained (CONTRACT §7): `bwrap` gives every process its own pid namespace, `/proc`
/// and filesystem view; `none` only a process group and a marker.
package enum IsolationMode: String, Sendable, Codable {
    case bwrap
    case none
}

/// What an isolated process sees of the filesystem. Applied in this order: the root (writable in host mode,
/// read-only in sandbox mode), the hidden directories and files, a private `/tmp`, the paths kept visible
/// read-only (the host checkout, the agent's executable), the paths bound back writable (its own checkout, the
/// agent CLIs' state, `DISPATCH_AGENT_RW_PATHS`), then the read-only ones on top (`.sandbox.env`).
package struct IsolationView: Sendable, Equatable {
    /// Whether the whole filesystem is read-only except what is bound back (sandbox mode).
    package var readOnlyRoot: Bool
    /// Directories replaced by an empty tmpfs (the state dir, the inbox, the sandbox root).
    package var hiddenDirectories: [String]
    /// Files replaced by an empty one (a token file outside the state dir).
    package var hiddenFiles: [String]
    /// Whether `/tmp` is a fresh tmpfs.
    package var privateTmp: Bool
    /// Bound back read-only after the private `/tmp` (so they stay visible wherever they live); missing ones skipped.
    package var visible: [String]
    /// Bound back read-write after everything above; missing paths are skipped.
    package var writable: [String]
    /// Bound read-only on top of everything; missing paths are skipped.
    package var readOnly: [String]

    /// A view of the given parts.
    package init(
        readOnlyRoot: Bool,
        hiddenDirectories: [String] = [],
        hiddenFiles: [String] = [],
        privateTmp: Bool = false,
        visible: [String] = [],
        writable: [String] = [],
        readOnly: [String] = []
    ) {
        self.readOnlyRoot = readOnlyRoot
        self.hiddenDirectories = hiddenDirectories
        self.hiddenFiles = hiddenFiles
        self.privateTmp = privateTmp
        self.visible = visible
        self.writable = writable
        self.readOnly = readOnly
    }
}

/// bubblewrap (`bwrap`): the argv that puts a process into its namespaces, and the start-up self-check.
package enum Bubblewrap {
    /// Where `bwrap` is on `PATH`, if it is.
    package static func locate(searchPath: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        ExecutableLocator.locate("bwrap", searchPath: searchPath)
    }

    /// The bwrap options for `view`, running in `workingDirectory`. A new pid namespace (its init dies with the
    /// command, and everything in it with the init) and its own `/proc`; `diesWithParent` ties it to the runner.
    package static func options(_ view: IsolationView, workingDirectory: String, diesWithParent: Bool) -> [String] {
        var options = ["--unshare-pid", view.readOnlyRoot ? "--ro-bind" : "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
        for directory in view.hiddenDirectories where FileManager.default.fileExists(atPath: directory) {
            options += ["--tmpfs", directory]
        }
        for file in view.hiddenFiles where FileManager.default.fileExists(atPath: file) {
            options += ["--ro-bind", "/dev/null", file]
        }
        if view.privateTmp { options += ["--tmpfs", "/tmp"] }
        for path in view.visible { options += ["--ro-bind-try", path, path] }
        for path in view.writable { options += ["--bind-try", path, path] }
        for path in view.readOnly { options += ["--ro-bind-try", path, path] }
        if diesWithParent { options.append("--die-with-parent") }
        options += ["--chdir", workingDirectory]
        return options
    }

    /// Why bwrap cannot contain a process here, or `nil` when it can: runs `true` in the namespaces agents get.
    package static func selfCheck(_ path: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments =
            options(IsolationView(readOnlyRoot: true, privateTmp: true), workingDirectory: "/", diesWithParent: true)
            + ["--", "/bin/true"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return "\(path) cannot be started: \(error)"
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile().prefix(500), as: UTF8.self)
            return "\(path) cannot create namespaces here (exit \(process.terminationStatus)): "
                + text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }

    /// Resolves `DISPATCH_ISOLATION` (`auto`, `bwrap`, `none`): `auto` uses bubblewrap when the self-check passes;
    /// `bwrap` that cannot work is an error saying why.
    package static func resolve(_ requested: String) throws(AgentProcessError) -> (mode: IsolationMode, bwrap: String?) {
        switch requested {
        case "none":
            return (.none, nil)
        case "auto", "bwrap":
            guard let path = locate() else {
                if requested == "auto" { return (.none, nil) }
                throw AgentProcessError(
                    code: .isolationUnavailable,
                    message: "DISPATCH_ISOLATION=bwrap but bwrap is not installed (apt-get install bubblewrap)"
                )
            }
            if let problem = selfCheck(path) {
                if requested == "auto" { return (.none, nil) }
                throw AgentProcessError(code: .isolationUnavailable, message: "DISPATCH_ISOLATION=bwrap but \(problem)")
            }
            return (.bwrap, path)
        default:
            throw AgentProcessError(code: .isolationUnavailable, message: "invalid DISPATCH_ISOLATION \(requested): must be auto, bwrap or none")
        }
    }
}
