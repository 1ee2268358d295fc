/// One Event about a Job or Pod.
package struct KubeEvent: Sendable, Equatable, Decodable {
    /// `type` (`Normal`, `Warning`), `reason` and `message`; empty when missing.
    package var type: String, reason: String, message: String

    /// Reads an Event object: it must be an object; a missing or mistyped field is empty.
    package init(from decoder: any Decoder) throws {
        let object = try decoder.container(keyedBy: KubeCodingKey.self)
        type = object.string("type") ?? ""
        reason = object.string("reason") ?? ""
        message = object.string("message") ?? ""
    }
}
