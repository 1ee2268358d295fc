/// The parts of a Pod the controller reads.
package struct KubePod: Sendable, Equatable, Decodable {
    /// `metadata.name` (empty when missing).
    package var name: String
    /// `status.phase` (`Unknown` when missing).
    package var phase: String
    /// `reason` of a waiting container (`ErrImagePull`, `ImagePullBackOff`, …).
    package var waitingReason: String?
    /// `message` of that waiting container.
    package var waitingMessage: String?
    /// `message` of a false `PodScheduled` condition whose reason is `Unschedulable`.
    package var unschedulableMessage: String?

    /// Reads a Pod object: it must be an object; any field that is missing or of another type reads as empty.
    package init(from decoder: any Decoder) throws {
        let object = try decoder.container(keyedBy: KubeCodingKey.self)
        let status = object.object("status")
        name = object.object("metadata")?.string("name") ?? ""
        phase = status?.string("phase") ?? "Unknown"
        let waiting = (status?.objects("containerStatuses") ?? []).compactMap { $0.object("state")?.object("waiting") }.first
        waitingReason = waiting?.string("reason")
        waitingMessage = waiting?.string("message")
        unschedulableMessage = (status?.objects("conditions") ?? []).first {
            $0.string("type") == "PodScheduled" && $0.string("status") == "False" && $0.string("reason") == "Unschedulable"
        }?.string("message")
    }
}
