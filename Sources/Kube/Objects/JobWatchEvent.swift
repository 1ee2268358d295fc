import Foundation

/// One event of a Job watch.
package enum JobWatchEvent: Sendable, Equatable {
    /// A Job appeared (or was there when the watch started).
    case added(KubeJob)
    /// A Job changed.
    case modified(KubeJob)
    /// A Job was deleted.
    case deleted(KubeJob)
    /// Nothing changed; the stream has reached this resourceVersion.
    case bookmark(resourceVersion: String)

    /// Decodes one line of a watch stream; an `ERROR` event (e.g. 410 Expired) throws its Status as a ``KubeError``.
    init?(line: Data) throws {
        guard let event = try? JSONDecoder().decode(Line.self, from: line) else {
            throw KubeError(
                status: 0,
                message: "watch stream sent something that is not an event: \(String(decoding: line.prefix(200), as: UTF8.self))"
            )
        }
        switch event.type {
        case "ADDED": self = .added(event.job)
        case "MODIFIED": self = .modified(event.job)
        case "DELETED": self = .deleted(event.job)
        case "BOOKMARK": self = .bookmark(resourceVersion: event.job.resourceVersion ?? "")
        case "ERROR":
            throw KubeError(status: event.status.code ?? 0, reason: event.status.reason, message: event.status.message ?? "watch error")
        default: return nil
        }
    }

    /// The Job the event carries (none for a bookmark).
    package var job: KubeJob? {
        switch self {
        case .added(let job), .modified(let job), .deleted(let job): job
        case .bookmark: nil
        }
    }

    /// The resourceVersion the stream has reached with this event.
    package var resourceVersion: String? {
        switch self {
        case .bookmark(let version): version
        default: job?.resourceVersion
        }
    }

    /// One line of a watch stream: a string `type` and an `object`, read both as a Job and as a Status (which
    /// one applies depends on the type).
    private struct Line: Decodable {
        var type: String
        var job: KubeJob
        var status: KubeStatus

        init(from decoder: any Decoder) throws {
            let line = try decoder.container(keyedBy: KubeCodingKey.self)
            type = try line.decode(String.self, forKey: KubeCodingKey("type"))
            job = try line.decode(KubeJob.self, forKey: KubeCodingKey("object"))
            status = try line.decode(KubeStatus.self, forKey: KubeCodingKey("object"))
        }
    }
}
