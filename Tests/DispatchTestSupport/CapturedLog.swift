import Logging

/// A log handler that keeps every line (level, message and metadata, as text) for tests to search.
package final class CapturedLog: Sendable {
    private let lines = Locked([String]())

    package init() {}

    /// Everything logged so far.
    package var text: String { lines.withLock { $0.joined(separator: "\n") } }

    /// A handler factory for `Logger(label:factory:)`.
    package var factory: @Sendable (String) -> any LogHandler {
        { label in Handler(label: label, log: self) }
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let label: String
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            log.append("\(event.level) \(label): \(event.message) \(all.map { "\($0)=\($1)" }.sorted().joined(separator: " "))")
        }
    }
}
