import Foundation

/// Reads JSON into a ``JSONValue`` exactly as swift-corelibs-foundation's `jsonObject(with:options:)` (with
/// `.fragmentsAllowed`) reads it, which is what the request validator and the agent-output readers used before.
///
/// Its rules, kept on purpose: UTF-16 and UTF-32 input is detected (by byte-order mark or by zero bytes) and a
/// UTF-8 byte-order mark skipped; a trailing comma is allowed in arrays and objects; at most 512 arrays and objects
/// nest; of a key given twice the last value wins; every run of raw bytes in a string is read with
/// `String(bytes:encoding:)` (which drops a leading U+FEFF from each); numbers become `Double` the way
/// `NSNumber.fromJSONNumber` + `doubleValue` made them (see `number(from:)`).
///
/// Unlike `JSONDecoder` probing a value's type (each miss throws an error whose coding path is rebuilt per level),
/// its cost is linear in the document, however deep.
struct JSONParser {
    /// The document as UTF-8.
    let bytes: [UInt8]
    /// The next byte to read.
    var index = 0
    /// Arrays and objects open around `index`.
    var depth = 0
    /// Numbers met that no `Double` holds; they fail the document unless a repeated key dropped them.
    var unrepresentableNumbers = 0

    /// Most arrays and objects nested in one another.
    static let maxDepth = 512

    /// Parses `data` as one JSON document.
    static func parse(_ data: Data) throws(JSONValue.ParseError) -> JSONValue {
        var parser = JSONParser(bytes: try utf8(data))
        try parser.skipWhitespace()
        let value = try parser.value()
        while let byte = parser.peek() {
            guard isWhitespace(byte) else { throw parser.unexpected(byte) }
            parser.index += 1
        }
        if parser.unrepresentableNumbers > 0, value.holdsUnrepresentableNumber {
            throw JSONValue.ParseError("a number is not representable as a Double")
        }
        return value
    }

    /// Any value, after optional whitespace.
    mutating func value() throws(JSONValue.ParseError) -> JSONValue {
        try skipWhitespace()
        switch bytes[index] {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"): return .object(try object())
        case UInt8(ascii: "["): return .array(try array())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        case let byte: throw unexpected(byte)
        }
    }

    /// An array, from its `[`.
    mutating func array() throws(JSONValue.ParseError) -> [JSONValue] {
        try open()
        defer { depth -= 1 }
        var items: [JSONValue] = []
        if try skipWhitespace() == UInt8(ascii: "]") {
            index += 1
            return items
        }
        while true {
            items.append(try value())
            switch try skipWhitespace() {
            case UInt8(ascii: "]"):
                index += 1
                return items
            case UInt8(ascii: ","):
                index += 1
                if try skipWhitespace() == UInt8(ascii: "]") {
                    index += 1
                    return items
                }
            case let byte:
                throw unexpected(byte)
            }
        }
    }

    /// An object, from its `{`.
    mutating func object() throws(JSONValue.ParseError) -> [String: JSONValue] {
        try open()
        defer { depth -= 1 }
        var members: [String: JSONValue] = [:]
        if try skipWhitespace() == UInt8(ascii: "}") {
            index += 1
            return members
        }
        while true {
            let key = try string()
            let colon = try skipWhitespace()
            guard colon == UInt8(ascii: ":") else { throw unexpected(colon) }
            index += 1
            members[key] = try value()
            switch try skipWhitespace() {
            case UInt8(ascii: "}"):
                index += 1
                return members
            case UInt8(ascii: ","):
                index += 1
                if try skipWhitespace() == UInt8(ascii: "}") {
                    index += 1
                    return members
                }
            case let byte:
                throw unexpected(byte)
            }
        }
    }

    /// Steps into an array or object, refusing the 513th level.
    private mutating func open() throws(JSONValue.ParseError) {
        guard depth < Self.maxDepth else { throw JSONValue.ParseError("more than \(Self.maxDepth) nested arrays and objects") }
        depth += 1
        index += 1
    }

    /// `true`, `false` or `null`, spelled out in full.
    private mutating func literal(_ word: String) throws(JSONValue.ParseError) {
        for expected in word.utf8 {
            guard let byte = next() else { throw endOfInput() }
            guard byte == expected else { throw unexpected(byte) }
        }
    }
}

extension JSONParser {
    /// Skips whitespace and returns the byte after it; the document may not end there.
    @discardableResult
    mutating func skipWhitespace() throws(JSONValue.ParseError) -> UInt8 {
        while let byte = peek() {
            guard Self.isWhitespace(byte) else { return byte }
            index += 1
        }
        throw endOfInput()
    }

    /// The byte at `index`, if any.
    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    /// The byte at `index`, consumed.
    mutating func next() -> UInt8? {
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return bytes[index]
    }

    /// An error for `byte` where it does not belong.
    func unexpected(_ byte: UInt8) -> JSONValue.ParseError {
        JSONValue.ParseError("unexpected byte \(byte) around offset \(index)")
    }

    /// An error for a document that ends too early.
    func endOfInput() -> JSONValue.ParseError { JSONValue.ParseError("unexpected end of the document") }

    /// JSON whitespace: space, tab, line feed, carriage return.
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}

extension JSONValue {
    /// Whether a number no `Double` holds (kept as NaN while parsing) is left anywhere in this value.
    var holdsUnrepresentableNumber: Bool {
        switch self {
        case .number(let number): number.isNaN
        case .array(let items): items.contains { $0.holdsUnrepresentableNumber }
        case .object(let members): members.values.contains { $0.holdsUnrepresentableNumber }
        case .null, .bool, .string: false
        }
    }
}
