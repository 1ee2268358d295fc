/// The parts of a Job the controller reads.
package struct KubeJob: Sendable, Equatable, Decodable {
    /// One entry of `status.conditions`.
    package struct Condition: Sendable, Equatable, Decodable {
        /// `type` (`Complete`, `Failed`, …) and `status` (`True`, `False`, `Unknown`); empty when missing.
        package var type: String, status: String
        /// Why the condition holds, in a word (`reason`) and in words (`message`).
        package var reason: String?, message: String?

        /// A condition as the API would report it.
        package init(type: String, status: String = "True", reason: String? = nil, message: String? = nil) {
            self.type = type
            self.status = status
            self.reason = reason
            self.message = message
        }

        /// Reads a condition object; a missing or mistyped field is empty (`type`, `status`) or nil.
        package init(from decoder: any Decoder) throws {
            let object = try decoder.container(keyedBy: KubeCodingKey.self)
            type = object.string("type") ?? ""
            status = object.string("status") ?? ""
            reason = object.string("reason")
            message = object.string("message")
        }
    }

    /// `metadata.name` (empty when missing).
    package var name: String
    /// `metadata.uid`.
    package var uid: String?
    /// `metadata.annotations` (empty when missing or not all strings).
    package var annotations: [String: String]
    /// `metadata.labels` (empty when missing or not all strings).
    package var labels: [String: String]
    /// `metadata.resourceVersion`.
    package var resourceVersion: String?
    /// `spec.suspend`: created suspended, resumed once the Job's Secret exists.
    package var suspended: Bool
    /// `status.conditions` (empty when missing or not all objects).
    package var conditions: [Condition]
    /// `status.active`, `status.succeeded` and `status.failed` pod counts (0 when missing).
    package var active: Int, succeeded: Int, failed: Int

    /// Reads a Job object: it must be an object; any field that is missing or of another type reads as empty.
    package init(from decoder: any Decoder) throws {
        let object = try decoder.container(keyedBy: KubeCodingKey.self)
        let metadata = object.object("metadata")
        let status = object.object("status")
        name = metadata?.string("name") ?? ""
        uid = metadata?.string("uid")
        suspended = object.object("spec")?.bool("suspend") ?? false
        annotations = metadata?.lenient("annotations", as: [String: String].self) ?? [:]
        labels = metadata?.lenient("labels", as: [String: String].self) ?? [:]
        resourceVersion = metadata?.string("resourceVersion")
        conditions = status?.lenient("conditions", as: [Condition].self) ?? []
        active = status?.int("active") ?? 0
        succeeded = status?.int("succeeded") ?? 0
        failed = status?.int("failed") ?? 0
    }

    /// The first true terminal condition (`Complete`, `SuccessCriteriaMet`, `Failed`, `FailureTarget`).
    package var terminalCondition: Condition? {
        conditions.first { ["Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"].contains($0.type) && $0.status == "True" }
    }
}
