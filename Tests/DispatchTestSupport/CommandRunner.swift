import CProcessSpawn
import Foundation
import Synchronization

/// Runs a command to completion for tests (real processes, output captured through files).
package struct CommandResult: Sendable {
    /// The exit code, or 128 + the signal number for a process a signal ended (as a shell reports it).
    package var exitCode: Int32
    package var stdout: String
    package var stderr: String
}

/// Starts the processes a test needs through the product's own spawner (`cps_spawn`), not `Foundation.Process`: the
/// child gets a clean signal mask and default dispositions (the test process blocks most signals for its signal
/// handling, and `Foundation.Process` passes that mask on, leaving helpers deaf to SIGTERM), leads its own session, and
/// is killed with SIGKILL when the test process dies however it dies. A ``RunningCommand`` that goes away before its
/// process was waited on kills the process's group, so a test that fails or throws early leaves nothing behind.
package enum CommandRunner {
    /// Runs `executable` (an absolute path) with `arguments`, `environment` added to this process's environment.
    @discardableResult
    package static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        cwd: String? = nil,
        stdin: String? = nil
    ) throws -> CommandResult {
        try start(executable, arguments, environment: environment, cwd: cwd, stdin: stdin).wait()
    }

    /// Starts a command and returns a handle to wait on or signal. `inheritEnvironment: false` gives it `environment`
    /// alone; `outputPath` takes both streams (appended, as a pod log interleaves them).
    package static func start(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        inheritEnvironment: Bool = true,
        cwd: String? = nil,
        stdin: String? = nil,
        outputPath: String? = nil
    ) throws -> RunningCommand {
        let dir = NSTemporaryDirectory() + "cmd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = outputPath ?? "\(dir)/stdout"
        let err = outputPath ?? "\(dir)/stderr"
        let input = "\(dir)/stdin"
        FileManager.default.createFile(atPath: input, contents: Data((stdin ?? "").utf8))
        let flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC
        let fds = [open(input, O_RDONLY | O_CLOEXEC), open(out, flags, 0o600), open(err, flags, 0o600)]
        defer { for fd in fds where fd >= 0 { close(fd) } }
        guard !fds.contains(-1) else { throw CommandError(message: "cannot open the output files in \(dir): errno \(errno)") }
        var base = inheritEnvironment ? ProcessInfo.processInfo.environment : [:]
        if inheritEnvironment { base["DISPATCH_AGENT_USER"] = base["DISPATCH_AGENT_USER"] ?? TestPaths.hostAgentUser }
        let env = base.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings([executable] + arguments) { argv in
            withCStrings(env) { envp in
                cps_spawn(&pid, executable, argv, envp, cwd, fds[0], fds[1], fds[2], -1, SIGKILL, nil, nil, 0)
            }
        }
        guard rc == 0 else {
            try? FileManager.default.removeItem(atPath: dir)
            throw CommandError(message: "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        return RunningCommand(pid: pid, stdoutPath: out, stderrPath: err, directory: dir)
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        return body(pointers)
    }
}

/// A command a test could not start.
package struct CommandError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}

/// A started command: its process and the group it leads.
package final class RunningCommand: Sendable {
    package let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    let directory: String
    /// The exit code once the process has been reaped.
    private let exitCode = Mutex<Int32?>(nil)

    init(pid: pid_t, stdoutPath: String, stderrPath: String, directory: String) {
        self.pid = pid
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        self.directory = directory
    }

    /// A process nobody waited for is killed with everything in its group: a test that ends early leaks nothing.
    deinit {
        if exitCode.withLock({ $0 }) == nil {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            _ = reap(options: 0)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Whether the process is still running (not yet ended; a zombie has ended). Never reaps, so one waiter alone does.
    package var isRunning: Bool {
        guard exitCode.withLock({ $0 }) == nil, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return !stat[close...].hasPrefix(") Z")
    }

    /// Sends SIGTERM.
    package func terminate() { kill(pid, SIGTERM) }

    /// Waits for the exit and returns the output.
    @discardableResult
    package func wait() -> CommandResult {
        let code = reap(options: 0) ?? -1
        return CommandResult(
            exitCode: code,
            stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        )
    }

    /// `waitpid` with `options`; the exit code once reaped (now or before), `nil` while it runs.
    private func reap(options: Int32) -> Int32? {
        if let code = exitCode.withLock({ $0 }) { return code }
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, options) } while result == -1 && errno == EINTR
        if result == 0 { return nil }
        // ECHILD: reaped by a concurrent call, which records the code.
        let code: Int32? = result == pid ? ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)) : nil
        return exitCode.withLock { recorded in
            if recorded == nil, let code { recorded = code }
            return recorded ?? -1
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes (a hang detector, not a timing assertion).
package func eventually(timeout: Duration = .seconds(20), _ condition: () throws -> Bool) async rethrows -> Bool {
    let clock = ContinuousClock()
    let end = clock.now + timeout
    while clock.now < end {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}
