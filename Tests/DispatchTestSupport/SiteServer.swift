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
        (process, port) = try LoopbackScript.start("site_server.py", ["--directory", directory, "--log", logPath], portFile: portFile)
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
