import DispatchCore
import Foundation
import Testing

/// `JSONValue(parsing:)` reads documents as `JSONSerialization` did (the validator's behaviour depends on it).
@Suite struct JSONValueTests {
    func parse(_ text: String) throws -> JSONValue { try JSONValue(parsing: Data(text.utf8)) }

    @Test func readsWhatJSONSerializationRead() throws {
        #expect(try parse(#" {"a":[1,"x",true,null,{}],"b":-2.5e1} "#) == ["a": [1, "x", true, .null, [:]], "b": -25])
        #expect(try parse(#""top""#) == "top", "any value at the top")
        #expect(try parse(#"{"a":1,"a":2}"#) == ["a": 2], "of a repeated key the last value wins")
        #expect(try parse(#"{"a":1e400,"a":1}"#) == ["a": 1], "a number dropped with its repeated key does not count")
        #expect(try parse(#"[1,{"b":2,},]"#) == [1, ["b": 2]], "trailing commas")
        #expect(try parse(#""\u00e9\ud83d\ude00\/\n""#) == "é😀/\n")
        #expect(try parse("\"\u{FEFF}x\\n\u{FEFF}y\"") == "x\ny", "String(bytes:encoding:) drops a leading U+FEFF of each run")
        #expect(try parse(#""\uFEFFx""#) == "\u{FEFF}x", "an escaped U+FEFF stays")
        #expect(try parse("\u{FEFF}[1]") == [1], "a UTF-8 byte-order mark is skipped")
        #expect(try JSONValue(parsing: #"{"a":"é"}"#.data(using: .utf16LittleEndian)!) == ["a": "é"], "UTF-16 without a mark")
        #expect(try JSONValue(parsing: Data([0xFF, 0xFE, 0, 0]) + "[7]".data(using: .utf32LittleEndian)!) == [7])
    }

    @Test func numbersBecomeTheDoubleNSNumberGave() throws {
        #expect(try parse("1e-400") == .number(0), "too small for a Double: zero")
        #expect(try parse("0.9999999999999999") == .number(1), "more than 17 characters: through Decimal")
        #expect(try parse("0.999999999999999") == .number(0.999999999999999))
        #expect(try parse("18446744073709551615") == .number(Double(UInt64.max)))
        guard case .number(let zero) = try parse("-0"), case .number(let negativeZero) = try parse("-0.0") else {
            Issue.record("not numbers")
            return
        }
        #expect(zero.sign == .plus && negativeZero.sign == .minus, "-0 was the integer 0, -0.0 a Double")
    }

    @Test func nestingStopsAt512() throws {
        let deep = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(throws: JSONValue.ParseError.self) { try parse("[" + deep + "]") }
        var value = try parse(deep)
        for _ in 0..<511 {
            guard case .array(let items) = value, items.count == 1 else { break }
            value = items[0]
        }
        #expect(value == [])
    }

    @Test(arguments: [
        "", " ", "{", "[1 2]", "[,]", "{,}", "{\"a\"}", "{\"a\":1,,}", "01", "-01", "1.", ".5", "+1", "1e", "-", "0x1", "NaN", "nul", "tru",
        "1e400", "[1e400]", #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\x""#, #""\u12g4""#, "\"a\u{1}b\"", "\"a\tb\"", "\"open",
        "{\"a\":1}x", "[1]]", "{\"a\" 1}", "{1:2}",
    ])
    func malformedDocumentsAreRejected(text: String) {
        #expect(throws: JSONValue.ParseError.self, "\(text.debugDescription)") { try parse(text) }
    }

    @Test func invalidUTF8IsRejected() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xC0, 0x80, 0x22]] {
            #expect(throws: JSONValue.ParseError.self, "\(bytes)") { try JSONValue(parsing: Data(bytes)) }
        }
    }
}
