import Yams

/// A YAML scalar typed as `Yams.load` types it: a string only when YAML reads it as one (`token: 12345` is a number
/// and `token: "12345"` a string), a boolean only when YAML reads it as one (`true`, `yes`; not `"true"`).
///
/// Decode it from a node made by `Yams.compose` (the default resolver): `YAMLDecoder` reads a scalar through
/// ``construct(from:)``, which sees the scalar's resolved tag. (`YAMLDecoder` parsing text itself would tag every
/// plain scalar a string.)
struct YAMLLoadedScalar: Sendable, Decodable, ScalarConstructible {
    /// The scalar when YAML types it a string.
    var string: String?
    /// The scalar when YAML types it a boolean.
    var bool: Bool?

    /// A scalar with these readings.
    init(string: String?, bool: Bool?) {
        self.string = string
        self.bool = bool
    }

    /// What `Yams.load` would make of `scalar`, as a string or a boolean (nil for a number, null, date, …).
    static func construct(from scalar: Node.Scalar) -> YAMLLoadedScalar? {
        let value = Node.scalar(scalar).any
        return YAMLLoadedScalar(string: value as? String, bool: value as? Bool)
    }

    /// Not a YAML scalar (Yams' decoder constructs scalars through ``construct(from:)`` and never calls this).
    init(from decoder: any Decoder) throws {
        throw DecodingError.typeMismatch(Self.self, DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "not a YAML scalar"))
    }
}
