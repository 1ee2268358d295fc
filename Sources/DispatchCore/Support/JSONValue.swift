import Foundation

/// Any JSON value, typed: what untrusted JSON is read into before each field is checked.
///
/// ``init(parsing:)`` reads a document the way Foundation's `jsonObject(with:options:)` (swift-corelibs-foundation)
/// did, so the validator accepts and rejects exactly what it did: see ``JSONParser``.
package enum JSONValue: Sendable, Equatable {
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
    package struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What is wrong and about where.
        package var reason: String

        /// Creates a parse error.
        package init(_ reason: String) {
            self.reason = reason
        }

        /// `invalid JSON: ` and the reason.
        package var description: String { "invalid JSON: \(reason)" }
    }

    /// Parses a whole JSON document: any value at the top (not only an object), UTF-8 or UTF-16/UTF-32.
    ///
    /// Linear in the size of the document; nesting is limited to 512 arrays and objects.
    package init(parsing data: Data) throws(ParseError) {
        self = try JSONParser.parse(data)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    /// A string literal.
    package init(stringLiteral value: String) { self = .string(value) }
    /// A boolean literal.
    package init(booleanLiteral value: Bool) { self = .bool(value) }
    /// An integer literal, as a number.
    package init(integerLiteral value: Int) { self = .number(Double(value)) }
    /// A floating-point literal, as a number.
    package init(floatLiteral value: Double) { self = .number(value) }
    /// An array literal.
    package init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// A dictionary literal; of a key given twice, the last value is kept.
    package init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
