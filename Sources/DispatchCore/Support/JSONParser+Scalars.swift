import Foundation

extension JSONParser {
    /// A string, from its opening quote: raw bytes (no control characters, valid UTF-8) and escapes.
    mutating func string() throws(JSONValue.ParseError) -> String {
        guard let quote = next() else { throw endOfInput() }
        guard quote == UInt8(ascii: "\"") else { throw unexpected(quote) }
        var output = ""
        var runStart = index
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "\""):
                output += try run(runStart..<index)
                index += 1
                return output
            case 0...0x1F:
                throw JSONValue.ParseError("unescaped control character in a string around offset \(index)")
            case UInt8(ascii: "\\"):
                output += try run(runStart..<index)
                index += 1
                output += try escape()
                runStart = index
            default:
                index += 1
            }
        }
        throw endOfInput()
    }

    /// Raw string bytes between escapes, read as Foundation's reader read them (`String(bytes:encoding:)`).
    private func run(_ range: Range<Int>) throws(JSONValue.ParseError) -> String {
        guard let run = String(bytes: bytes[range], encoding: .utf8) else {
            throw JSONValue.ParseError("invalid UTF-8 in a string around offset \(range.lowerBound)")
        }
        return run
    }

    /// What follows a backslash.
    private mutating func escape() throws(JSONValue.ParseError) -> String {
        guard let byte = next() else { throw endOfInput() }
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"): return String(try unicodeEscape())
        default: throw JSONValue.ParseError("invalid escape sequence around offset \(index - 1)")
        }
    }

    /// `\uXXXX`, or a surrogate pair `\uD83D\uDE00`; a lone surrogate is an error.
    private mutating func unicodeEscape() throws(JSONValue.ParseError) -> Unicode.Scalar {
        let unit = try hexCodeUnit()
        guard unit & 0xFC00 == 0xD800 else {
            guard let scalar = Unicode.Scalar(unit) else { throw JSONValue.ParseError("lone low surrogate around offset \(index)") }
            return scalar
        }
        guard let backslash = next(), let u = next() else { throw endOfInput() }
        guard backslash == UInt8(ascii: "\\"), u == UInt8(ascii: "u") else {
            throw JSONValue.ParseError("high surrogate without a low surrogate around offset \(index)")
        }
        let low = try hexCodeUnit()
        guard low & 0xFC00 == 0xDC00 else { throw JSONValue.ParseError("high surrogate without a low surrogate around offset \(index)") }
        let value = (UInt32(unit - 0xD800) << 10) + UInt32(low - 0xDC00) + 0x10000
        guard let scalar = Unicode.Scalar(value) else { throw JSONValue.ParseError("invalid surrogate pair around offset \(index)") }
        return scalar
    }

    /// Four hex digits.
    private mutating func hexCodeUnit() throws(JSONValue.ParseError) -> UInt16 {
        var unit: UInt16 = 0
        for _ in 0..<4 {
            guard let byte = next() else { throw endOfInput() }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: throw JSONValue.ParseError("invalid hex digit in a \\u escape around offset \(index - 1)")
            }
            unit = unit << 4 | UInt16(digit)
        }
        return unit
    }
}
