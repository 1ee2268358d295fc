/// A key of a JSON or YAML object, by name. API replies and kubeconfigs are read field by field and leniently:
/// an absent, null or mistyped field is ignored rather than failing the whole object (see the container helpers
/// below).
struct KubeCodingKey: CodingKey {
    /// The field name.
    var stringValue: String
    /// Always nil: only objects, whose keys are names, are read through this key.
    var intValue: Int? { nil }

    /// The key of field `name`.
    init(_ name: String) { stringValue = name }

    /// The key of field `stringValue`.
    init?(stringValue: String) { self.stringValue = stringValue }

    /// Never: only objects, whose keys are names, are read through this key.
    init?(intValue: Int) { return nil }
}

extension KeyedDecodingContainer where K == KubeCodingKey {
    /// The field `key` as a `type`: nil when it is absent, null or not a `type`.
    func lenient<T: Decodable>(_ key: String, as type: T.Type) -> T? {
        try? decodeIfPresent(type, forKey: KubeCodingKey(key))
    }

    /// The field `key` when it is a string.
    func string(_ key: String) -> String? { lenient(key, as: String.self) }

    /// The field `key` when it is an integer.
    func int(_ key: String) -> Int? { lenient(key, as: Int.self) }

    /// The field `key` when it is a boolean.
    func bool(_ key: String) -> Bool? { lenient(key, as: Bool.self) }

    /// The field `key` when it is an object.
    func object(_ key: String) -> KeyedDecodingContainer<KubeCodingKey>? {
        try? nestedContainer(keyedBy: KubeCodingKey.self, forKey: KubeCodingKey(key))
    }

    /// The field `key` when it is an array of objects only; nil when it is absent, not an array, or holds anything
    /// but objects.
    func objects(_ key: String) -> [KeyedDecodingContainer<KubeCodingKey>]? {
        guard var array = try? nestedUnkeyedContainer(forKey: KubeCodingKey(key)) else { return nil }
        var objects: [KeyedDecodingContainer<KubeCodingKey>] = []
        while !array.isAtEnd {
            guard let object = try? array.nestedContainer(keyedBy: KubeCodingKey.self) else { return nil }
            objects.append(object)
        }
        return objects
    }
}
