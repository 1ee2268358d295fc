/// The fields of one kubeconfig mapping (a cluster, user or context body), typed as `Yams.load` types them:
/// ``strings`` holds the fields YAML reads as strings (`token: 12345` is a number, so it is not there), ``bools``
/// those it reads as booleans, ``keys`` names every field whatever its value (`exec: null` too).
struct KubeConfigMapping: Sendable, Decodable {
    /// The string fields, by key.
    var strings: [String: String] = [:]
    /// The boolean fields, by key.
    var bools: [String: Bool] = [:]
    /// Every key.
    var keys: Set<String> = []

    /// An empty mapping (a body that is missing or not a mapping).
    init() {}

    /// Reads a mapping (anything else throws); decode it from a node made by `Yams.compose` (see ``YAMLLoadedScalar``).
    init(from decoder: any Decoder) throws {
        let mapping = try decoder.container(keyedBy: KubeCodingKey.self)
        for key in mapping.allKeys {
            keys.insert(key.stringValue)
            guard let scalar = try? mapping.decode(YAMLLoadedScalar.self, forKey: key) else { continue }
            strings[key.stringValue] = scalar.string
            bools[key.stringValue] = scalar.bool
        }
    }
}
