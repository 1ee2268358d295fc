import CProcessSpawn
import Foundation

/// What an agent CLI binary says about itself (CONTRACT §1: command lines are learned from the binary, not assumed
/// from a version list): its version line and the options its help lists. Probed once per binary — path, size,
/// modification time and inode — and remembered in the state dir.
package struct CLIProbe: Sendable, Codable, Equatable {
    /// The binary, symlinks resolved.
    package var path: String
    /// What `--version` printed (first line), if anything.
    package var version: String?
    /// Every `--option` (and `-x`) its help text names.
    package var options: [String]
    /// Why it could not be probed (it would not run, or its help named no option).
    package var problem: String?

    /// Whether the help lists `option`.
    package func accepts(_ option: String) -> Bool { options.contains(option) }

    /// The help commands of each tool: the options of `codex exec` are in `codex exec --help`.
    static func helpArguments(tool: String) -> [[String]] {
        tool == "codex" ? [["exec", "--help"]] : [["--help"]]
    }

    /// The probe of `executable` (a tool's CLI), from `cacheDirectory` when it was probed there as it is now.
    package static func probe(_ executable: String, tool: String, cacheDirectory: String?) -> CLIProbe {
        let real = URL(fileURLWithPath: executable).resolvingSymlinksInPath().path
        let key = fileKey(real)
        if let cacheDirectory, let key, let cached = CLIProbeCache.read(cacheDirectory)[real], cached.key == key {
            return cached.probe
        }
        let probe = run(real, tool: tool)
        if let cacheDirectory, let key, probe.problem == nil { CLIProbeCache.remember(probe, key: key, in: cacheDirectory) }
        return probe
    }

    /// Runs the binary's `--version` and help, in an empty temp home (a CLI may write its state there).
    static func run(_ path: String, tool: String) -> CLIProbe {
        let home = NSTemporaryDirectory() + "dispatch-cli-probe-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: home) }
        let environment = [
            "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=\(home)", "NO_COLOR=1", "TERM=dumb", "CI=true",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1",
        ]
        // Only stdout: a CLI may warn on stderr first (codex about its home under the temp dir).
        let version = capture(path, ["--version"], environment: environment, stderr: false)
        var options = Set<String>()
        var failure: String?
        for arguments in helpArguments(tool: tool) {
            let help = capture(path, arguments, environment: environment)
            options.formUnion(Self.options(in: help.output))
            if help.status != 0 { failure = "`\(([path] + arguments).joined(separator: " "))` \(help.describe)" }
        }
        let versionLine = version.output.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) }
        let problem = options.isEmpty ? (failure ?? "`\(path) --help` named no option") : nil
        return CLIProbe(path: path, version: version.status == 0 ? versionLine : nil, options: options.sorted(), problem: problem)
    }

    /// The `--long-option`s and `-x` short options a help text names.
    package static func options(in help: String) -> Set<String> {
        var found = Set<String>()
        for token in help.split(whereSeparator: { $0.isWhitespace || ",=[]<>()|".contains($0) }) {
            var option = Substring(token)
            while let last = option.last, ".:;'\"`".contains(last) { option = option.dropLast() }
            if option.hasPrefix("--"), option.count > 2, option.dropFirst(2).allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) {
                found.insert(String(option))
            } else if option.count == 2, option.first == "-", option.last?.isLetter == true {
                found.insert(String(option))
            }
        }
        return found
    }

    /// Size, modification time and inode: a binary replaced or updated in place is probed again.
    static func fileKey(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return "\(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)-\(info.st_ino)"
    }

    /// Runs `path` with `arguments` (stdin `/dev/null`, stdout and — unless `stderr` is false — stderr together) for at most `timeout`, keeping
    /// the first 256 KiB it prints.
    static func capture(
        _ path: String,
        _ arguments: [String],
        environment: [String],
        stderr: Bool = true,
        timeout: Duration = .seconds(20)
    ) -> Captured {
        var fds: [Int32] = [-1, -1]
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0, pipe(&fds) == 0 else {
            if null >= 0 { close(null) }
            return Captured(status: nil, output: "", describe: "could not be started: \(errnoText())")
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(null) }
        var pid: pid_t = 0
        let argv = CStringArray([path] + arguments)
        let envp = CStringArray(environment)
        let rc = argv.withPointer { argvPointer in
            envp.withPointer { cps_spawn(&pid, path, argvPointer, $0, "/", null, fds[1], stderr ? fds[1] : null, -1, SIGKILL, nil, nil, 0) }
        }
        close(fds[1])
        defer { close(fds[0]) }
        guard rc == 0 else { return Captured(status: nil, output: "", describe: "could not be started: \(String(cString: strerror(rc)))") }
        let end = ContinuousClock.now + timeout
        var kept = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 16_384)
        var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        while ContinuousClock.now < end {
            guard poll(&poller, 1, 100) >= 0 || errno == EINTR else { break }
            guard poller.revents != 0 else { continue }
            let count = read(fds[0], &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            if kept.count < 256 << 10 { kept += chunk[0..<min(count, (256 << 10) - kept.count)] }
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let code = WaitStatus.exitCode(status)
        let describe = ContinuousClock.now >= end ? "did not finish within \(timeout)" : code.map { "exited \($0)" } ?? "was killed"
        return Captured(status: code, output: String(decoding: kept, as: UTF8.self), describe: describe)
    }

    /// What a probe command printed and how it ended.
    struct Captured {
        var status: Int32?
        var output: String
        var describe: String
    }
}

/// `<state dir>/cli-probes.json`: each probed binary's key and probe, written whole and private.
enum CLIProbeCache {
    struct Entry: Codable {
        var key: String
        var probe: CLIProbe
    }

    static func file(_ directory: String) -> String { "\(directory)/cli-probes.json" }

    static func read(_ directory: String) -> [String: Entry] {
        guard let data = FileManager.default.contents(atPath: file(directory)) else { return [:] }
        return (try? JSONDecoder().decode([String: Entry].self, from: data)) ?? [:]
    }

    static func remember(_ probe: CLIProbe, key: String, in directory: String) {
        var entries = read(directory)
        entries[probe.path] = Entry(key: key, probe: probe)
        guard let data = try? JSONEncoder().encode(entries) else { return }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let target = file(directory)
        let temporary = "\(target).\(getpid()).\(UUID().uuidString.prefix(8)).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else { return }
        if rename(temporary, target) != 0 { unlink(temporary) }
    }
}
