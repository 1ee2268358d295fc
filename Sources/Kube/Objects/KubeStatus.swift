/// The API's `Status` object: the body of an error reply, and the object of a watch `ERROR` event.
struct KubeStatus: Sendable, Decodable {
    /// The HTTP status it stands for (`code`).
    var code: Int?
    /// `AlreadyExists`, `NotFound`, `Expired`, … (`reason`).
    var reason: String?
    /// What failed, in words (`message`).
    var message: String?

    /// Reads a Status object: it must be an object; a missing or mistyped field is nil.
    init(from decoder: any Decoder) throws {
        let object = try decoder.container(keyedBy: KubeCodingKey.self)
        code = object.int("code")
        reason = object.string("reason")
        message = object.string("message")
    }
}
