/// A reply that must be a JSON object but whose fields are not read (a created Secret, a patched Job).
struct KubeAnyObject: Sendable, Decodable {
    /// Succeeds for any object, fails for anything else.
    init(from decoder: any Decoder) throws {
        _ = try decoder.container(keyedBy: KubeCodingKey.self)
    }
}
