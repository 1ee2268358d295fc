import Foundation

extension JSONParser {
    /// Where a number's scan is: in the integer part (`operand`), after `.`, after `e`, after the exponent's sign.
    private enum NumberPart {
        case operand, decimalPoint, exponent, exponentSign
    }

    /// A number: `-`? digits (no leading zero) (`.` digits)? (`e`|`E` (`+`|`-`)? digits)?, ended by whitespace,
    /// `,`, `]`, `}` or the end of the document.
    mutating func number() throws(JSONValue.ParseError) -> JSONValue {
        let start = index
        var part = NumberPart.operand
        var digitsInPart = bytes[index] == UInt8(ascii: "-") ? 0 : 1
        var leadingZero = bytes[index] == UInt8(ascii: "0")
        index += 1
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard !leadingZero else { throw JSONValue.ParseError("number with a leading zero around offset \(index)") }
                if byte == UInt8(ascii: "0"), digitsInPart == 0, part == .operand { leadingZero = true }
                digitsInPart += 1
            case UInt8(ascii: "."):
                guard digitsInPart > 0, part == .operand else { throw unexpected(byte) }
                (part, digitsInPart, leadingZero) = (.decimalPoint, 0, false)
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                guard digitsInPart > 0, part == .operand || part == .decimalPoint else { throw unexpected(byte) }
                (part, digitsInPart, leadingZero) = (.exponent, 0, false)
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard digitsInPart == 0, part == .exponent else { throw unexpected(byte) }
                (part, digitsInPart) = (.exponentSign, 0)
            case 0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"):
                guard digitsInPart > 0 else { throw unexpected(byte) }
                return number(from: String(decoding: bytes[start..<index], as: UTF8.self))
            default:
                throw unexpected(byte)
            }
            index += 1
        }
        guard digitsInPart > 0 else { throw endOfInput() }
        return number(from: String(decoding: bytes[start..<index], as: UTF8.self))
    }

    /// The `Double` Foundation's reader gave for `text`: an `Int64` / `UInt64` when the integer fits, a `Decimal`
    /// for more than 17 characters before a lowercase `e` (an exponent in -128...127), a `Double` otherwise. NaN
    /// (counted) when none holds it.
    private mutating func number(from text: String) -> JSONValue {
        let exponentIndex = text.firstIndex(of: "e")
        let isInteger = !text.contains(".") && exponentIndex == nil
        let digitCount = text[..<(exponentIndex ?? text.endIndex)].count
        if isInteger {
            if text.hasPrefix("-") {
                if digitCount <= 19, let integer = Int64(text) { return .number(Double(integer)) }
            } else if digitCount <= 20, let integer = UInt64(text) {
                return .number(Double(integer))
            }
        }
        var exponent = 0
        if let exponentIndex, let parsed = Int(text[text.index(after: exponentIndex)...]) { exponent = parsed }
        if digitCount > 17, (-128...127).contains(exponent), let decimal = Decimal(string: text), decimal.isFinite {
            return .number(NSDecimalNumber(decimal: decimal).doubleValue)
        }
        if let double = Double(text), double.isFinite { return .number(double) }
        unrepresentableNumbers += 1
        return .number(.nan)
    }

    /// The document as UTF-8: UTF-16 and UTF-32 (told by a byte-order mark, or by where the zero bytes are) are
    /// converted, a UTF-8 byte-order mark is dropped.
    static func utf8(_ data: Data) throws(JSONValue.ParseError) -> [UInt8] {
        let bytes = [UInt8](data)
        let (encoding, markLength) = encoding(of: bytes)
        if encoding == .utf8 { return Array(bytes[markLength...]) }
        guard let text = String(bytes: bytes[markLength...], encoding: encoding) else {
            throw JSONValue.ParseError("the document is not valid \(encoding)")
        }
        return Array(text.utf8)
    }

    /// Foundation's reader's encoding detection: the encoding and the length of its byte-order mark.
    private static func encoding(of bytes: [UInt8]) -> (String.Encoding, Int) {
        if bytes.count >= 4 {
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return (.utf8, 3) }
            if bytes.starts(with: [0x00, 0x00, 0xFE, 0xFF]) { return (.utf32BigEndian, 4) }
            if bytes.starts(with: [0xFF, 0xFE, 0x00, 0x00]) { return (.utf32LittleEndian, 4) }
            if bytes.starts(with: [0xFF, 0xFE]) { return (.utf16LittleEndian, 2) }
            if bytes.starts(with: [0xFE, 0xFF]) { return (.utf16BigEndian, 2) }
            switch (bytes[0], bytes[1], bytes[2], bytes[3]) {
            case (0, 0, 0, _): return (.utf32BigEndian, 0)
            case (_, 0, 0, 0): return (.utf32LittleEndian, 0)
            case (0, _, 0, _): return (.utf16BigEndian, 0)
            case (_, 0, _, 0): return (.utf16LittleEndian, 0)
            default: return (.utf8, 0)
            }
        }
        if bytes.count >= 2 {
            if bytes[0] == 0 { return (.utf16BigEndian, 0) }
            if bytes[1] == 0 { return (.utf16LittleEndian, 0) }
        }
        return (.utf8, 0)
    }
}
