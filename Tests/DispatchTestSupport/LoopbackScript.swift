import Foundation

/// A helper script of `canaries/` that listens on loopback and writes its port to a file once it does (the model
/// stubs, the site server, the OTLP receiver): started, and its port read within 15 s, or killed with its stderr.
package enum LoopbackScript {
    package static func start(_ script: String, _ arguments: [String], portFile: String) throws -> (process: RunningCommand, port: Int) {
        let process = try CommandRunner.start(
            "/usr/bin/python3",
            ["\(TestPaths.packageRoot)/canaries/\(script)"] + arguments + ["--port-file", portFile]
        )
        let end = Date().addingTimeInterval(15)
        var port: Int?
        while port == nil, Date() < end {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if port == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard let port else {
            kill(process.pid, SIGKILL)
            throw CommandError(message: "\(script) did not start: \(process.wait().stderr)")
        }
        return (process, port)
    }
}
