import CProcessSpawn
import Foundation

/// How agent processes are contained (CONTRACT §7): `bwrap` gives every process its own pid namespace, `/proc`
/// and filesystem view; `none` only a process group and a marker.
package enum IsolationMode: String, Sendable, Codable {
    case bwrap
    case none
}

/// What an isolated process sees of the filesystem. Applied in this order, each step on top of the last: the root
/// (writable in host mode, read-only in sandbox mode), a private `/tmp`, the paths kept visible read-only (the host
/// checkout, the agent's program) and the shared writable ones (the agent CLIs' state, `DISPATCH_AGENT_RW_PATHS`),
/// parents before children (a read-only checkout inside a writable path stays read-only), then
/// the hidden directories and files — after every bind, so no bind of a parent brings them back — then the paths
/// bound back inside them (its own checkout) and the read-only ones on top (`.sandbox.env`, a read-only work dir).
package struct IsolationView: Sendable, Equatable {
    /// Whether the whole filesystem is read-only except what is bound back (sandbox mode).
    package var readOnlyRoot: Bool
    /// Whether `/tmp` is a fresh tmpfs.
    package var privateTmp: Bool
    /// Bound read-only (so they stay visible wherever they live); missing ones skipped.
    package var visible: [String]
    /// Bound read-write; missing ones skipped.
    package var writable: [String]
    /// Directories replaced by an empty tmpfs (the state dir, the inbox, the sandbox root).
    package var hiddenDirectories: [String]
    /// Files replaced by an empty one (a token file outside the state dir, the kubeconfig).
    package var hiddenFiles: [String]
    /// Bound back read-write after the hidden parts (its own checkout inside the sandbox root).
    package var boundBack: [String]
    /// Bound read-only on top of everything; missing ones skipped.
    package var readOnly: [String]
    /// Who the agent runs as (a root runner's agents never run as root, CONTRACT §7); `nil`: as the runner.
    package var user: AgentUser?
    /// The process's network (CONTRACT §10): its own namespace, loopback only, left through this bridge to the egress
    /// proxy; `nil`: the runner's network.
    package var network: NetworkBridge?

    /// Every path bound from the runner's filesystem.
    var allBound: [String] { visible + writable + boundBack + readOnly }

    /// A view of the given parts.
    package init(
        readOnlyRoot: Bool,
        privateTmp: Bool = false,
        visible: [String] = [],
        writable: [String] = [],
        hiddenDirectories: [String] = [],
        hiddenFiles: [String] = [],
        boundBack: [String] = [],
        readOnly: [String] = []
    ) {
        self.readOnlyRoot = readOnlyRoot
        self.privateTmp = privateTmp
        self.visible = visible
        self.writable = writable
        self.hiddenDirectories = hiddenDirectories
        self.hiddenFiles = hiddenFiles
        self.boundBack = boundBack
        self.readOnly = readOnly
    }
}

/// bubblewrap (`bwrap`): the argv that puts a process into its namespaces, and the start-up self-check.
package enum Bubblewrap {
    /// Where `bwrap` is on `PATH`, if it is.
    package static func locate(searchPath: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        ExecutableLocator.locate("bwrap", searchPath: searchPath)
    }

    /// The bwrap options for `view`, running in `workingDirectory`: no capabilities (a root agent could otherwise
    /// unmount what hides the runner), new pid, IPC and UTS namespaces (its init dies with the command, and everything
    /// in it with the init), its own `/proc` with `/proc/sys` and `/sys` read-only, and a minimal `/dev`;
    /// `diesWithParent` ties it to the runner.
    package static func options(_ view: IsolationView, workingDirectory: String, diesWithParent: Bool) -> [String] {
        // Its own IPC namespace (a SysV segment or queue dies with the run, memory limit and all) and UTS namespace.
        var options = ["--cap-drop", "ALL"] + (view.user.map { _ in AgentUser.switchCapabilities } ?? [])
        options += ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        options += [view.readOnlyRoot ? "--ro-bind" : "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        // The kernel's knobs read-only: sysctls and sysfs check the writer's uid, not its capabilities, so a uid-0 agent
        // could set `kernel.core_pattern` (a program the kernel runs as root outside every namespace). `/proc/sys` is
        // the host's, bound read-only over the new `/proc`'s; the cgroup hierarchies too, and every hierarchy mounted
        // under them (an agent could otherwise leave its run's cgroup or raise its own limits in host mode).
        options += ["--ro-bind", "/proc/sys", "/proc/sys", "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]
        options += ["--ro-bind-try", "/proc/irq", "/proc/irq", "--ro-bind-try", "/proc/bus", "/proc/bus"]
        options += ["--ro-bind", "/sys", "/sys", "--ro-bind-try", "/sys/fs/cgroup", "/sys/fs/cgroup"]
        if view.privateTmp { options += ["--perms", "01777", "--tmpfs", "/tmp"] }
        let closed = closedAncestors(view)
        for directory in closed { options += ["--tmpfs", directory] }
        // The directories bwrap makes on the way to a bind inside a tmpfs, passable for an agent user.
        let made = (view.privateTmp ? ["/tmp"] : []) + closed
        let way = { (path: String, roots: [String]) in view.user == nil ? [] : wayTo(path, madeIn: roots, avoiding: view.allBound) }
        // The most specific path decides: a writable parent (an `DISPATCH_AGENT_RW_PATHS` entry holding the host
        // checkout) is bound first and the read-only checkout on top, a writable child inside a read-only one last.
        let binds = view.visible.map { (path: $0, writable: false) } + view.writable.map { (path: $0, writable: true) }
        let depth = { (path: String) in path.split(separator: "/").count }
        for bind in binds.enumerated().sorted(by: { (depth($0.element.path), $0.offset) < (depth($1.element.path), $1.offset) }) {
            options += way(bind.element.path, made)
            options += [bind.element.writable ? "--bind-try" : "--ro-bind-try", bind.element.path, bind.element.path]
        }
        for directory in view.hiddenDirectories where FileManager.default.fileExists(atPath: directory) {
            options += ["--tmpfs", directory]
        }
        for file in view.hiddenFiles where FileManager.default.fileExists(atPath: file) {
            options += ["--ro-bind", "/dev/null", file]
        }
        for path in view.boundBack { options += way(path, made + view.hiddenDirectories) + ["--bind-try", path, path] }
        for path in view.readOnly { options += way(path, made + view.hiddenDirectories) + ["--ro-bind-try", path, path] }
        // A bind of a parent of a hidden part (a `read-only` work dir that holds the state dir) brings the real
        // directory back: hide what lies inside what was bound last, once more.
        let rebound = view.boundBack + view.readOnly
        func inside(_ path: String) -> Bool { rebound.contains { path == $0 || path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") } }
        for directory in view.hiddenDirectories where inside(directory) && FileManager.default.fileExists(atPath: directory) {
            options += ["--tmpfs", directory]
        }
        for file in view.hiddenFiles where inside(file) && FileManager.default.fileExists(atPath: file) {
            options += ["--ro-bind", "/dev/null", file]
        }
        if let network = view.network {
            // A network namespace leaves sockets at paths reachable: the host's resolver (systemd-resolved's varlink,
            // nscd) would look names up — and send them out — for the agent. The runtime directories go, unless
            // something bound lies in them; then at least the resolvers' sockets.
            options.append("--unshare-net")
            for directory in runtimeDirectoriesToHide(view) { options += ["--tmpfs", directory] }
            for path in [network.directory, network.program] {
                options += wayTo(path, madeIn: made + view.hiddenDirectories, avoiding: view.allBound) + ["--ro-bind", path, path]
            }
        }
        if diesWithParent { options.append("--die-with-parent") }
        // An agent user enters its work dir itself, after the switch (``AgentUser/switchArguments``).
        options += ["--chdir", view.user == nil ? workingDirectory : "/"]
        return options
    }

    /// Where local daemons keep their sockets: hidden from an agent with a network of its own (`/run`, `/var/run`
    /// when it is a directory of its own), or, when something bound lies inside one, the resolvers' directories there.
    static func runtimeDirectoriesToHide(_ view: IsolationView) -> [String] {
        func inside(_ path: String, _ directory: String) -> Bool { path == directory || path.hasPrefix(directory + "/") }
        var hidden: [String] = []
        for directory in ["/run", "/var/run"] {
            var info = stat()
            guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            if !view.allBound.contains(where: { inside($0, directory) }) {
                hidden.append(directory)
                continue
            }
            for resolver in resolverDirectories where inside(resolver, directory) && FileManager.default.fileExists(atPath: resolver) {
                if !view.allBound.contains(where: { inside($0, resolver) }) { hidden.append(resolver) }
            }
        }
        return hidden
    }

    /// Daemons that resolve names (and so reach the network) for whoever connects to their socket.
    static let resolverDirectories = ["/run/systemd/resolve", "/run/nscd", "/run/avahi-daemon", "/run/dbus", "/run/systemd"]

    /// The directories above what is bound for a user who may not pass through them (a root runner's `0700` home or
    /// temp dir above the host checkout, whose objects the sandbox's `alternates` names, or above the agent's program,
    /// or above the state dir holding the run's home): replaced by an empty tmpfs, through which bwrap makes the way
    /// to what is bound. The user could not read what they held anyway. In host mode only the paths bound back (the
    /// run's home, the work dir) count: the rest of the filesystem is the user's as it is.
    static func closedAncestors(_ view: IsolationView) -> [String] {
        guard let user = view.user else { return [] }
        let bound = view.readOnlyRoot ? view.visible + view.writable + view.boundBack + view.readOnly : view.boundBack
        var closed = Set<String>()
        for path in bound {
            var ancestor = (path as NSString).deletingLastPathComponent
            while ancestor != "/" && !ancestor.isEmpty {
                if view.privateTmp, ancestor == "/tmp" || ancestor.hasPrefix("/tmp/") { break }
                var info = stat()
                if stat(ancestor, &info) == 0, !Self.mayPass(user, info) { closed.insert(ancestor) }
                ancestor = (ancestor as NSString).deletingLastPathComponent
            }
        }
        // The outermost first; a closed directory inside another one is made by bwrap in the outer tmpfs.
        let outermost = closed.filter { path in !closed.contains { path.hasPrefix($0 + "/") } }
        return outermost.sorted()
    }

    /// `--dir` (mode 0755) for each directory bwrap would otherwise make `0700` on the way to `path`: those below the
    /// deepest of `roots` (a tmpfs) holding it, up to the first that is itself bound (a real directory, left as it is).
    static func wayTo(_ path: String, madeIn roots: [String], avoiding bound: [String]) -> [String] {
        func isInside(_ child: String, _ parent: String) -> Bool { child.hasPrefix(parent.hasSuffix("/") ? parent : parent + "/") }
        guard let root = roots.filter({ isInside(path, $0) }).max(by: { $0.count < $1.count }) else { return [] }
        // Only binds inside the tmpfs are real directories there; one that holds the tmpfs lies under it.
        let inside = bound.filter { isInside($0, root) }
        var options: [String] = []
        var directory = root
        for component in path.dropFirst(root.count).split(separator: "/").dropLast() {
            directory += "/\(component)"
            if inside.contains(where: { directory == $0 || isInside(directory, $0) }) { break }
            options += ["--perms", "0755", "--dir", directory]
        }
        return options
    }

    /// Whether `user` may pass through a directory with `info` (search permission for its owner, group or others).
    static func mayPass(_ user: AgentUser, _ info: stat) -> Bool {
        if info.st_uid == user.uid { return info.st_mode & S_IXUSR != 0 }
        if info.st_gid == user.gid { return info.st_mode & S_IXGRP != 0 }
        return info.st_mode & S_IXOTH != 0
    }

    /// What the self-check runs: a capability check in the namespaces and view agents get.
    static var selfCheckArguments: [String] {
        // A network namespace of its own too: every isolated attempt gets one (CONTRACT §10).
        options(IsolationView(readOnlyRoot: true, privateTmp: true), workingDirectory: "/", diesWithParent: true)
            + ["--unshare-net", "--", "/bin/sh", "-c", "grep -Eq '^CapEff:[[:space:]]+0+$' /proc/self/status"]
    }

    /// Why bwrap cannot contain a process here, or `nil` when it can: runs a check in the namespaces agents get.
    package static func selfCheck(_ path: String) -> String? {
        let run: (status: Int32, stderr: String)
        do {
            run = try runToEnd(path, selfCheckArguments)
        } catch {
            return "\(path) cannot be started: \(error.message)"
        }
        guard run.status == 0 else {
            return
                "\(path) cannot create namespaces without capabilities here (\(run.status > 128 ? "signal \(run.status - 128)" : "exit \(run.status)")): "
                + run.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }

    /// Runs `path` with `arguments` to its end through the spawner (a clean signal mask and default dispositions, as
    /// every child of the runner gets): its exit code (128 + the signal for a signalled one) and the first 500 bytes it
    /// wrote to stderr.
    static func runToEnd(_ path: String, _ arguments: [String]) throws(AgentProcessError) -> (status: Int32, stderr: String) {
        var pipeFds: [Int32] = [-1, -1]
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0, pipe(&pipeFds) == 0 else {
            if null >= 0 { close(null) }
            throw AgentProcessError(code: .spawnFailed, message: "cannot start \(path): \(errnoText())", errno: errno)
        }
        defer { close(null) }
        for fd in pipeFds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let argv = CStringArray([path] + arguments)
        let envp = CStringArray(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        var pid: pid_t = 0
        let rc = argv.withPointer { argvPointer in
            envp.withPointer { cps_spawn(&pid, path, argvPointer, $0, "/", null, null, pipeFds[1], -1, SIGKILL, nil, nil, 0) }
        }
        close(pipeFds[1])
        defer { close(pipeFds[0]) }
        guard rc == 0 else {
            throw AgentProcessError(code: .spawnFailed, message: "cannot start \(path): \(String(cString: strerror(rc)))", errno: rc)
        }
        var kept = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(pipeFds[0], &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            if kept.count < 500 { kept += chunk[0..<min(count, 500 - kept.count)] }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let code = WaitStatus.exitCode(status) ?? 128 + (WaitStatus.signal(status) ?? 0)
        return (code, String(decoding: kept, as: UTF8.self))
    }

    /// Resolves `DISPATCH_ISOLATION` (`auto`, `bwrap`, `none`): `auto` uses bubblewrap when the self-check passes;
    /// `bwrap` that cannot work is an error saying why. With `cacheDirectory` (the state dir) a pass is remembered
    /// there while it holds (``IsolationCheckCache``).
    package static func resolve(
        _ requested: String,
        cacheDirectory: String? = nil
    ) throws(AgentProcessError) -> (mode: IsolationMode, bwrap: String?) {
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
            if let cacheDirectory, IsolationCheckCache.passed(path, in: cacheDirectory) { return (.bwrap, path) }
            if let problem = selfCheck(path) {
                if requested == "auto" { return (.none, nil) }
                throw AgentProcessError(code: .isolationUnavailable, message: "DISPATCH_ISOLATION=bwrap but \(problem)")
            }
            if let cacheDirectory { IsolationCheckCache.remember(path, in: cacheDirectory) }
            return (.bwrap, path)
        default:
            throw AgentProcessError(code: .isolationUnavailable, message: "invalid DISPATCH_ISOLATION \(requested): must be auto, bwrap or none")
        }
    }
}
