import Foundation
import Testing

@testable import AgentProcess

/// The bubblewrap options an isolated process is started with: the order is the view.
@Suite struct BubblewrapOptionsTests {
    @Test func theViewIsAppliedRootHiddenTmpVisibleWritableReadOnly() throws {
        let dir = NSTemporaryDirectory() + "bwrap-options-\(UUID().uuidString)"
        for name in ["state", "checkout", "host"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/\(name)", withIntermediateDirectories: true)
        }
        FileManager.default.createFile(atPath: "\(dir)/token", contents: Data("t".utf8))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let view = IsolationView(
            readOnlyRoot: true,
            hiddenDirectories: ["\(dir)/state", "\(dir)/absent"],
            hiddenFiles: ["\(dir)/token"],
            privateTmp: true,
            visible: ["\(dir)/host"],
            writable: ["\(dir)/checkout"],
            readOnly: ["\(dir)/checkout/.env"]
        )
        let options = Bubblewrap.options(view, workingDirectory: "\(dir)/checkout", diesWithParent: true)
        func index(_ sequence: [String]) -> Int? {
            (0...(options.count - sequence.count)).first { Array(options[$0..<($0 + sequence.count)]) == sequence }
        }
        let root = try #require(index(["--ro-bind", "/", "/"]))
        let hidden = try #require(index(["--tmpfs", "\(dir)/state"]))
        let token = try #require(index(["--ro-bind", "/dev/null", "\(dir)/token"]))
        let tmp = try #require(index(["--tmpfs", "/tmp"]))
        let host = try #require(index(["--ro-bind-try", "\(dir)/host", "\(dir)/host"]))
        let checkout = try #require(index(["--bind-try", "\(dir)/checkout", "\(dir)/checkout"]))
        let env = try #require(index(["--ro-bind-try", "\(dir)/checkout/.env", "\(dir)/checkout/.env"]))
        #expect(root < hidden && hidden < token && token < tmp && tmp < host && host < checkout && checkout < env)
        #expect(index(["--tmpfs", "\(dir)/absent"]) == nil, "a hidden path that does not exist is skipped")
        #expect(options.contains("--unshare-pid") && options.contains("--die-with-parent"))
        #expect(index(["--chdir", "\(dir)/checkout"]) != nil)
        let host2 = Bubblewrap.options(IsolationView(readOnlyRoot: false), workingDirectory: "/", diesWithParent: false)
        #expect(Array(host2[1...3]) == ["--bind", "/", "/"] && !host2.contains("--die-with-parent") && !host2.contains("/tmp"))
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
