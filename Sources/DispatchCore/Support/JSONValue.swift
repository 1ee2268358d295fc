import Foundation

/// Any JSON value, typed: what untrusted JSON is read into before each field is checked.
///
/// ``init(parsing:)`` reads a document the way Foundation's `jsonObject(with:options:)` (swift-corelibs-foundation)
/// did, so the validator accepts and rejects exactly what it did: see ``JSONParser``.
public enum JSONValue: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// Any JSON number, as the `Double` Foundation's `NSNumber` gave.
    case number(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object; of a key given twice, the last value is kept.
    case object([String: JSONValue])

    /// Why a document is not JSON.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong and about where.
        public var reason: String

        /// Creates a parse error.
        public init(_ reason: String) {
            self.reason = reason
        }

        /// `invalid JSON: ` and the reason.
        public var description: String { "invalid JSON: \(reason)" }
    }

    /// Parses a whole JSON document: any value at the top (not only an object), UTF-8 or UTF-16/UTF-32.
    ///
    /// Linear in the size of the document; nesting is limited to 512 arrays and objects.
    public init(parsing data: Data) throws(ParseError) {
        self = try JSONParser.parse(data)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    /// A string literal.
    public init(stringLiteral value: String) { self = .string(value) }
    /// A boolean literal.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// An integer literal, as a number.
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    /// A floating-point literal, as a number.
    public init(floatLiteral value: Double) { self = .number(value) }
    /// An array literal.
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// A dictionary literal; of a key given twice, the last value is kept.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
