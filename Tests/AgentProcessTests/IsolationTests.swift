import DispatchTestSupport
import Foundation
import Testing

@testable import AgentProcess

/// The bubblewrap options an isolated process is started with: the order is the view.
@Suite struct BubblewrapOptionsTests {
    @Test func theRunnersPartsAreHiddenAfterEveryBindThatCouldBringThemBack() throws {
        let dir = NSTemporaryDirectory() + "bwrap-options-\(UUID().uuidString)"
        for name in ["state", "checkout", "host"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(name)", withIntermediateDirectories: true)
        }
        FileManager.default.createFile(atPath: "\(dir)/token", contents: Data("t".utf8))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let view = IsolationView(
            readOnlyRoot: true,
            privateTmp: true,
            visible: ["\(dir)/host"],
            writable: [dir],
            hiddenDirectories: ["\(dir)/state", "\(dir)/absent"],
            hiddenFiles: ["\(dir)/token"],
            boundBack: ["\(dir)/checkout"],
            readOnly: ["\(dir)/checkout/.env"]
        )
        let options = Bubblewrap.options(view, workingDirectory: "\(dir)/checkout", diesWithParent: true)
        func index(_ sequence: [String]) -> Int? {
            (0...(options.count - sequence.count)).first { Array(options[$0..<($0 + sequence.count)]) == sequence }
        }
        let root = try #require(index(["--ro-bind", "/", "/"]))
        let tmp = try #require(index(["--tmpfs", "/tmp"]))
        let host = try #require(index(["--ro-bind-try", "\(dir)/host", "\(dir)/host"]))
        let parent = try #require(index(["--bind-try", dir, dir]))
        let hidden = try #require(index(["--tmpfs", "\(dir)/state"]))
        let token = try #require(index(["--ro-bind", "/dev/null", "\(dir)/token"]))
        let checkout = try #require(index(["--bind-try", "\(dir)/checkout", "\(dir)/checkout"]))
        let env = try #require(index(["--ro-bind-try", "\(dir)/checkout/.env", "\(dir)/checkout/.env"]))
        // The read-only host checkout inside a writable parent is bound after it, so it stays read-only.
        #expect(root < tmp && tmp < parent && parent < host && host < hidden && hidden < token && token < checkout && checkout < env)
        #expect(index(["--tmpfs", "\(dir)/absent"]) == nil, "a hidden path that does not exist is skipped")
        #expect(index(["--cap-drop", "ALL"]) == 0, "no capabilities, even for a root runner")
        #expect(options.contains("--unshare-pid") && options.contains("--die-with-parent") && index(["--dev", "/dev"]) != nil)
        #expect(index(["--chdir", "\(dir)/checkout"]) != nil)
        let host2 = Bubblewrap.options(IsolationView(readOnlyRoot: false), workingDirectory: "/", diesWithParent: false)
        #expect(index(["--bind", "/", "/"]) == nil && host2.contains("--bind") && !host2.contains("--die-with-parent") && !host2.contains("/tmp"))
    }

    /// Runs `script` isolated with `view` and returns what it printed.
    func isolated(_ script: String, view: IsolationView, in dir: String, cwd: String = "/") async throws -> String {
        let bwrap = try #require(Bubblewrap.locate())
        var spec = ProcessSpec(
            executablePath: "/bin/sh",
            argv: ["sh", "-c", script],
            environment: ["PATH": "/usr/bin:/bin"],
            workingDirectory: cwd,
            stdoutPath: "\(dir)/out",
            stderrPath: "\(dir)/err"
        )
        spec.isolation = (bwrap, view)
        _ = try await ProcessSupervisor().run(spec, limits: ProcessLimits(timeout: .seconds(10)))
        return (try? String(contentsOfFile: "\(dir)/out", encoding: .utf8)) ?? ""
    }

    @Test(.enabled(if: Bubblewrap.locate() != nil)) func aReadOnlyCheckoutInsideAWritablePathStaysReadOnly() async throws {
        let dir = NSTemporaryDirectory() + "bwrap-nested-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(dir)/repo/cache", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The writable path holds the read-only checkout, which holds a writable path of its own: each deeper one wins.
        let view = IsolationView(readOnlyRoot: true, visible: ["\(dir)/repo"], writable: ["\(dir)/repo/cache", dir])
        let output = try await isolated(
            "touch \(dir)/repo/x 2>/dev/null && echo repo-written; touch \(dir)/repo/cache/y && echo cache-written; "
                + "touch \(dir)/z && echo parent-written",
            view: view,
            in: dir
        )
        #expect(output == "cache-written\nparent-written\n", "\(output)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/repo/x"))
    }

    @Test(.enabled(if: Bubblewrap.locate() != nil && FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/tasks")))
    func aHostModeAgentCannotLeaveItsCgroupThroughAWritableRoot() async throws {
        let dir = NSTemporaryDirectory() + "bwrap-cgroupfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Writing "0" moves the writer: possible for the runner's uid on a writable cgroupfs, refused read-only.
        let output = try await isolated(
            "echo 0 > /sys/fs/cgroup/pids/tasks 2>/dev/null && echo moved; echo done",
            view: IsolationView(readOnlyRoot: false),
            in: dir
        )
        #expect(output == "done\n", "\(output)")
    }

    /// The attack that got a root agent full root outside every namespace: sysctls check the writer's uid, so without a
    /// read-only `/proc/sys` a uid-0 agent could set `kernel.core_pattern` to a program the kernel runs as root. Writes
    /// the current `kernel.pid_max` back (harmless), a sysfs file likewise, and leaves a SysV segment behind.
    @Test(.enabled(if: Bubblewrap.locate() != nil)) func kernelKnobsAreReadOnlyAndIPCDiesWithTheRun() async throws {
        let dir = NSTemporaryDirectory() + "bwrap-sysctl-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script =
            "v=$(cat /proc/sys/kernel/pid_max); echo $v > /proc/sys/kernel/pid_max 2>/dev/null && echo SYSCTL-WRITTEN; "
            + "f=/sys/kernel/mm/transparent_hugepage/enabled; [ -e $f ] && touch $f 2>/dev/null && echo SYSFS-WRITTEN; "
            + "ipcmk -M 4096 -p 0600 >/dev/null 2>&1; echo $(ipcs -m | grep -c '^0x') segments; echo done"
        let segments = { try CommandRunner.run("/bin/sh", ["-c", "ipcs -m | grep -c '^0x'"]).stdout }
        for root in [false, true] {
            let before = try segments()
            let seen = try await isolated(script, view: IsolationView(readOnlyRoot: root), in: dir)
            #expect(seen.hasSuffix("done\n") && !seen.contains("WRITTEN"), "a kernel knob was writable (readOnlyRoot \(root)): \(seen)")
            #expect(seen.split(separator: "\n").contains("1 segments"), "the agent sees only its own segment: \(seen)")
            #expect(try segments() == before, "the agent's SysV segment outlived it")
        }
        if getuid() == 0 {
            let bare = try CommandRunner.run(
                "/bin/sh",
                ["-c", "v=$(cat /proc/sys/kernel/pid_max); echo $v > /proc/sys/kernel/pid_max && echo SYSCTL-WRITTEN"]
            )
            #expect(bare.stdout.contains("SYSCTL-WRITTEN"), "uncontained, the same write works (the check can fail): \(bare.stderr)")
        }
    }

    /// A root runner's agent user (CONTRACT §7): no capability left, not uid 0, and the way to its own `0700`
    /// checkout inside the hidden sandbox root, under a `0700` directory of root's, open to it — root's files not.
    @Test(.enabled(if: Bubblewrap.locate() != nil && getuid() == 0 && AgentUser.setpriv != nil))
    func anAgentUserHasNoCapabilityAndReachesOnlyWhatIsBoundForIt() async throws {
        let dir = NSTemporaryDirectory() + "bwrap-user-\(UUID().uuidString)"
        let host = "/var/tmp/bwrap-user-\(UUID().uuidString)"
        let checkout = "\(dir)/state/sandboxes/run/repo"
        for path in [checkout, "\(host)/repo"] { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        defer { for path in [dir, host] { try? FileManager.default.removeItem(atPath: path) } }
        for path in [dir, "\(dir)/state", "\(dir)/state/sandboxes", "\(dir)/state/sandboxes/run", host] { chmod(path, 0o700) }
        chmod("\(host)/repo", 0o755)
        try Data("root's\n".utf8).write(to: URL(fileURLWithPath: "\(host)/secret"))
        try Data("shared\n".utf8).write(to: URL(fileURLWithPath: "\(host)/repo/readme"))
        chmod("\(host)/repo/readme", 0o644)
        let user = AgentUser(uid: 60_998, gid: 60_998)
        try user.own(checkout)
        chmod(checkout, 0o700)
        var view = IsolationView(
            readOnlyRoot: true,
            privateTmp: true,
            visible: ["\(host)/repo"],
            hiddenDirectories: ["\(dir)/state"],
            boundBack: [checkout]
        )
        view.user = user
        let script =
            "id -u; grep CapEff /proc/self/status; grep CapBnd /proc/self/status; echo mine > own.txt && echo WROTE-OWN; "
            + "cat \(host)/repo/readme; cat \(host)/secret 2>/dev/null && echo READ-ROOTS; touch /tmp/t && echo TMP-OK"
        let seen = try await isolated(script, view: view, in: dir, cwd: checkout)
        let lines = seen.split(separator: "\n").map(String.init)
        #expect(lines.first == "60998", "\(seen)")
        #expect(lines.contains { $0.hasPrefix("CapEff:") && $0.hasSuffix("0000000000000000") }, "\(seen)")
        #expect(lines.contains { $0.hasPrefix("CapBnd:") && $0.hasSuffix("0000000000000000") }, "\(seen)")
        #expect(lines.contains("WROTE-OWN") && lines.contains("shared") && lines.contains("TMP-OK"), "\(seen)")
        #expect(!seen.contains("READ-ROOTS"), "the agent user read a file of root's: \(seen)")
        var info = stat()
        #expect(stat("\(checkout)/own.txt", &info) == 0 && info.st_uid == 60_998)
    }

    /// The way bwrap makes to a path bound back inside a hidden dir is passable for the agent user also when what holds
    /// the hidden dir is itself bound (a program's directory that holds the state dir); and the agent user enters its
    /// work dir itself: a link planted there into a directory it may not pass leads nowhere.
    @Test(.enabled(if: Bubblewrap.locate() != nil && getuid() == 0 && AgentUser.setpriv != nil))
    func theWayToABoundPathIsPassableAndALinkedWorkDirIsEnteredAsTheUser() async throws {
        let dir = "/var/tmp/bwrap-way-\(UUID().uuidString)"
        let checkout = "\(dir)/state/sandboxes/run/repo"
        let foreign = "\(dir)/foreign/proj"
        for path in [checkout, foreign] { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o755)
        for path in ["\(dir)/state", "\(dir)/state/sandboxes", "\(dir)/state/sandboxes/run"] { chmod(path, 0o700) }
        // Another user's: 0700 above, 0755 below.
        _ = try CommandRunner.run("/bin/chown", ["-R", "1234:1234", "\(dir)/foreign"])
        chmod("\(dir)/foreign", 0o700)
        chmod(foreign, 0o755)
        try Data("theirs\n".utf8).write(to: URL(fileURLWithPath: "\(foreign)/notes.txt"))
        chmod("\(foreign)/notes.txt", 0o644)
        let user = AgentUser(uid: 60_996, gid: 60_996)
        try user.own(checkout)
        try FileManager.default.createSymbolicLink(atPath: "\(checkout)/sub", withDestinationPath: foreign)
        var view = IsolationView(readOnlyRoot: true, privateTmp: true, visible: [dir], hiddenDirectories: ["\(dir)/state"], boundBack: [checkout])
        view.user = user
        let own = try await isolated("id -u; echo here > mine.txt && echo WROTE", view: view, in: "/var/tmp", cwd: checkout)
        #expect(own.contains("60996") && own.contains("WROTE"), "the agent user reached its checkout: \(own)")
        let linked = try await isolated("cat notes.txt && echo READ-THEIRS; pwd", view: view, in: "/var/tmp", cwd: "\(checkout)/sub")
        #expect(!linked.contains("READ-THEIRS"), "a planted link took the agent user into a directory it may not pass: \(linked)")
    }

    @Test(.enabled(if: Bubblewrap.locate() != nil)) func aRootAgentCannotUnmaskWhatIsHidden() async throws {
        let dir = NSTemporaryDirectory() + "bwrap-unmask-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(dir)/state", withIntermediateDirectories: true)
        try Data("secret-\(dir.hashValue)".utf8).write(to: URL(fileURLWithPath: "\(dir)/state/token"))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let view = IsolationView(readOnlyRoot: false, visible: [dir], hiddenDirectories: ["\(dir)/state"])
        let script =
            "cat \(dir)/state/token; umount \(dir)/state 2>/dev/null; umount -l /proc 2>/dev/null; cat \(dir)/state/token; "
            + "mount -o remount,rw,bind / 2>/dev/null && echo REMOUNTED"
        let seen = try await isolated(script, view: view, in: dir)
        #expect(!seen.contains("secret-"), "the hidden token was read (a bind of its parent, or an unmount): \(seen)")
        #expect(!seen.contains("REMOUNTED"))
        let open = try await isolated("cat \(dir)/state/token", view: IsolationView(readOnlyRoot: false), in: dir)
        #expect(open.contains("secret-"), "without hiding it the same read finds it, so the check can fail")
    }

    /// A `read-only` host work dir that holds the state dir (the home directory) is bound after the state dir was
    /// hidden: the state dir must be hidden again on top of it.
    @Test(.enabled(if: Bubblewrap.locate() != nil)) func aReadOnlyBindOfAParentDoesNotBringTheStateDirBack() async throws {
        let dir = NSTemporaryDirectory() + "bwrap-rebind-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(dir)/state", withIntermediateDirectories: true)
        try Data("secret-\(dir.hashValue)".utf8).write(to: URL(fileURLWithPath: "\(dir)/state/token"))
        try Data("visible".utf8).write(to: URL(fileURLWithPath: "\(dir)/work.txt"))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let view = IsolationView(readOnlyRoot: false, hiddenDirectories: ["\(dir)/state"], readOnly: [dir])
        let seen = try await isolated(
            "cat \(dir)/state/token; cat \(dir)/work.txt; touch \(dir)/new 2>/dev/null || echo READONLY",
            view: view,
            in: dir
        )
        #expect(!seen.contains("secret-"), "the read-only bind of the parent brought the state dir back: \(seen)")
        #expect(seen.contains("visible") && seen.contains("READONLY"), "the work dir itself is there, read-only: \(seen)")
    }

    @Test(.enabled(if: Bubblewrap.locate() != nil)) func aSignalDeathIsReportedAsTheSignal() async throws {
        let bwrap = try #require(Bubblewrap.locate())
        let dir = NSTemporaryDirectory() + "bwrap-signal-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec = ProcessSpec(
            executablePath: "/bin/sh",
            argv: ["sh", "-c", "kill -SEGV $$"],
            environment: ["PATH": "/usr/bin:/bin"],
            workingDirectory: dir,
            stdoutPath: "\(dir)/out",
            stderrPath: "\(dir)/err"
        )
        spec.isolation = (bwrap, IsolationView(readOnlyRoot: false))
        let outcome = try await ProcessSupervisor().run(spec, limits: ProcessLimits(timeout: .seconds(10)))
        #expect(outcome.signal == SIGSEGV && outcome.exitCode == nil, "\(outcome)")
        spec.argv = ["sh", "-c", "exit 7"]
        let exited = try await ProcessSupervisor().run(spec, limits: ProcessLimits(timeout: .seconds(10)))
        #expect(exited.exitCode == 7 && exited.signal == nil)
    }
}
