import Foundation

/// The parts of a Job the controller reads.
public struct KubeJob: Sendable, Equatable {
    public struct Condition: Sendable, Equatable {
        public var type: String
        public var status: String
        public var reason: String?
        public var message: String?
    }

    public var name: String
    public var uid: String?
    public var annotations: [String: String]
    public var labels: [String: String]
    public var resourceVersion: String?
    /// `spec.suspend`: created suspended, resumed once the Job's Secret exists.
    public var suspended: Bool
    public var conditions: [Condition]
    public var active: Int
    public var succeeded: Int
    public var failed: Int

    init(_ object: [String: Any]) {
        let metadata = object["metadata"] as? [String: Any] ?? [:]
        let status = object["status"] as? [String: Any] ?? [:]
        name = metadata["name"] as? String ?? ""
        uid = metadata["uid"] as? String
        suspended = (object["spec"] as? [String: Any])?["suspend"] as? Bool ?? false
        annotations = metadata["annotations"] as? [String: String] ?? [:]
        labels = metadata["labels"] as? [String: String] ?? [:]
        resourceVersion = metadata["resourceVersion"] as? String
        conditions = (status["conditions"] as? [[String: Any]] ?? []).map {
            Condition(type: $0["type"] as? String ?? "", status: $0["status"] as? String ?? "",
                      reason: $0["reason"] as? String, message: $0["message"] as? String)
        }
        active = status["active"] as? Int ?? 0
        succeeded = status["succeeded"] as? Int ?? 0
        failed = status["failed"] as? Int ?? 0
    }

    /// The first true terminal condition (`Complete`, `SuccessCriteriaMet`, `Failed`, `FailureTarget`).
    public var terminalCondition: Condition? {
        conditions.first { ["Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"].contains($0.type) && $0.status == "True" }
    }
}

/// The parts of a Pod the controller reads.
public struct KubePod: Sendable, Equatable {
    public var name: String
    public var phase: String
    /// `reason` of a waiting container (`ErrImagePull`, `ImagePullBackOff`, …).
    public var waitingReason: String?
    public var waitingMessage: String?
    /// `reason` of a false `PodScheduled` condition (`Unschedulable`).
    public var unschedulableMessage: String?

    init(_ object: [String: Any]) {
        let metadata = object["metadata"] as? [String: Any] ?? [:]
        let status = object["status"] as? [String: Any] ?? [:]
        name = metadata["name"] as? String ?? ""
        phase = status["phase"] as? String ?? "Unknown"
        let waiting = (status["containerStatuses"] as? [[String: Any]] ?? []).compactMap {
            ($0["state"] as? [String: Any])?["waiting"] as? [String: Any]
        }.first
        waitingReason = waiting?["reason"] as? String
        waitingMessage = waiting?["message"] as? String
        unschedulableMessage = (status["conditions"] as? [[String: Any]] ?? []).first {
            $0["type"] as? String == "PodScheduled" && $0["status"] as? String == "False" && $0["reason"] as? String == "Unschedulable"
        }?["message"] as? String
    }
}

/// One Event about a Job or Pod.
public struct KubeEvent: Sendable, Equatable {
    public var type: String
    public var reason: String
    public var message: String

    init(_ object: [String: Any]) {
        type = object["type"] as? String ?? ""
        reason = object["reason"] as? String ?? ""
        message = object["message"] as? String ?? ""
    }
}

/// One event of a Job watch.
public enum JobWatchEvent: Sendable, Equatable {
    case added(KubeJob)
    case modified(KubeJob)
    case deleted(KubeJob)
    /// Nothing changed; the stream has reached this resourceVersion.
    case bookmark(resourceVersion: String)

    /// Decodes one line of a watch stream; an `ERROR` event (e.g. 410 Expired) throws its Status as a ``KubeError``.
    init?(line: Data) throws {
        guard let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any], let type = object["type"] as? String,
            let body = object["object"] as? [String: Any]
        else { throw KubeError(status: 0, message: "watch stream sent something that is not an event: \(String(decoding: line.prefix(200), as: UTF8.self))") }
        switch type {
        case "ADDED": self = .added(KubeJob(body))
        case "MODIFIED": self = .modified(KubeJob(body))
        case "DELETED": self = .deleted(KubeJob(body))
        case "BOOKMARK": self = .bookmark(resourceVersion: KubeJob(body).resourceVersion ?? "")
        case "ERROR":
            throw KubeError(status: body["code"] as? Int ?? 0, reason: body["reason"] as? String, message: body["message"] as? String ?? "watch error")
        default: return nil
        }
    }

    /// The Job the event carries (none for a bookmark).
    public var job: KubeJob? {
        switch self {
        case .added(let job), .modified(let job), .deleted(let job): job
        case .bookmark: nil
        }
    }

    public var resourceVersion: String? {
        switch self {
        case .bookmark(let version): version
        default: job?.resourceVersion
        }
    }
}
