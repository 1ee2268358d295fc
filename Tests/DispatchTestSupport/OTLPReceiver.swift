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
        (process, port) = try LoopbackScript.start("otlp_receiver.py", ["--log", logPath], portFile: portFile)
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
