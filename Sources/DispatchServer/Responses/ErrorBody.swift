import Foundation

/// `{"ok":false,"error":…,"field":…}` plus any extra string fields (e.g. `"status":"unknown"`).
struct ErrorBody: Encodable, Sendable {
    var error: String
    var field: String?
    var extra: [String: String] = [:]

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(false, forKey: Key("ok"))
        try container.encode(error, forKey: Key("error"))
        try container.encodeIfPresent(field, forKey: Key("field"))
        for (key, value) in extra where !["ok", "error", "field"].contains(key) { try container.encode(value, forKey: Key(key)) }
    }
}
