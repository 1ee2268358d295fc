import Foundation

/// `canaries/otlp_receiver.py` on loopback: takes OTLP/HTTP trace exports and keeps one line per span; stopped with
/// the value.
package final class OTLPReceiver: Sendable {
    package let port: Int
    /// One JSON object a span: traceId, spanId, parentSpanId, name, attributes, start, end.
    package let logPath: String
    private let process: RunningCommand

    package init(in dir: TempDir) throws {
        let portFile = dir.child("otlp.port")
        logPath = dir.child("spans.jsonl")
        process = try CommandRunner.start(
            "/usr/bin/python3",
            ["\(TestPaths.packageRoot)/canaries/otlp_receiver.py", "--log", logPath, "--port-file", portFile]
        )
        var port: Int?
        for _ in 0..<300 where port == nil {
            port = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0) }
            if port == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard let port else {
            kill(process.pid, SIGKILL)
            throw CommandError(message: "the OTLP receiver did not start: \(process.wait().stderr)")
        }
        self.port = port
    }

    /// The spans received so far.
    package var spans: [[String: Any]] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    deinit {
        kill(process.pid, SIGKILL)
        process.wait()
    }
}
