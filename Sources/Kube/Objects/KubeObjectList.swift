/// A list reply (`JobList`, `PodList`, `EventList`): its items and its resourceVersion.
struct KubeObjectList<Item: Decodable & Sendable>: Sendable, Decodable {
    /// `items`: empty when missing, or when anything in it is not an object.
    var items: [Item]
    /// `metadata.resourceVersion`, to start a watch from.
    var resourceVersion: String?

    /// Reads a list object: it must be an object; a missing or mistyped field is empty.
    init(from decoder: any Decoder) throws {
        let object = try decoder.container(keyedBy: KubeCodingKey.self)
        items = object.lenient("items", as: [Item].self) ?? []
        resourceVersion = object.object("metadata")?.string("resourceVersion")
    }
}
