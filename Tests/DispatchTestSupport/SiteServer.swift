import Foundation

/// `canaries/site_server.py` on loopback: a directory served over plain HTTP (files, and bare git repositories
/// through git's dumb HTTP), every request logged; stopped with the value. The egress tests' "internet".
package final class SiteServer: Sendable {
    package let port: Int
    /// One line per request: `METHOD PATH host=HOST`.
    package let logPath: String
    /// What it serves.
    package let directory: String
    private let process: RunningCommand

    /// Serves `directory` (made if missing), its port and log files named `name` in `dir`.
    package init(_ name: String, serving directory: String, in dir: TempDir) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let portFile = dir.child("\(name).port")
        logPath = dir.child("\(name).log")
        self.directory = directory
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process = try CommandRunner.start(
            "/usr/bin/python3",
            ["\(TestPaths.packageRoot)/canaries/site_server.py", "--directory", directory, "--port-file", portFile, "--log", logPath]
        )
        let end = Date().addingTimeInterval(15)
        var port: Int?
        while port == nil, Date() < end {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if port == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard let port else {
            kill(process.pid, SIGKILL)
            throw CommandError(message: "the site server \(name) did not start: \(process.wait().stderr)")
        }
        self.port = port
    }

    /// `http://127.0.0.1:PORT`.
    package var url: String { "http://127.0.0.1:\(port)" }

    /// The requests it got so far.
    package var requests: [String] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    deinit {
        kill(process.pid, SIGKILL)
        process.wait()
    }
}
