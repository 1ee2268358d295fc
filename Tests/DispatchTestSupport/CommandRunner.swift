import Foundation

/// Runs a command to completion for tests (real processes, output captured through files).
package struct CommandResult: Sendable {
    package var exitCode: Int32
    package var stdout: String
    package var stderr: String
}

package enum CommandRunner {
    /// Runs `executable` with `arguments`, `environment` added to this process's environment.
    @discardableResult
    package static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        cwd: String? = nil,
        stdin: String? = nil
    ) throws -> CommandResult {
        let process = try start(executable, arguments, environment: environment, cwd: cwd, stdin: stdin)
        process.process.waitUntilExit()
        return process.collect()
    }

    /// Starts a command and returns a handle to wait on or signal.
    package static func start(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        cwd: String? = nil,
        stdin: String? = nil
    ) throws -> RunningCommand {
        let dir = NSTemporaryDirectory() + "cmd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let out = "\(dir)/stdout"
        let err = "\(dir)/stderr"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        if let stdin {
            let input = "\(dir)/stdin"
            FileManager.default.createFile(atPath: input, contents: Data(stdin.utf8))
            process.standardInput = FileHandle(forReadingAtPath: input)
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        return RunningCommand(process: process, stdoutPath: out, stderrPath: err, directory: dir)
    }
}

/// A started command.
package struct RunningCommand: @unchecked Sendable {
    // Process is thread-safe for the calls used here (waitUntilExit, processIdentifier, terminationStatus).
    package let process: Process
    let stdoutPath: String
    let stderrPath: String
    let directory: String

    package var pid: Int32 { process.processIdentifier }

    /// Waits and returns the output.
    package func wait() -> CommandResult {
        process.waitUntilExit()
        return collect()
    }

    func collect() -> CommandResult {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return CommandResult(
            exitCode: process.terminationStatus,
            stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        )
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
