import Crypto
import DispatchCore
import Foundation

/// Kubernetes names and label values derived from request fields.
package enum JobNaming {
    /// Longest DNS-1123 label.
    package static let maxNameLength = 63

    /// A deterministic DNS-1123 label of at most 63 characters for `requestId`: `dispatch-<slug>-<10 hex>`.
    ///
    /// Sanitising alone collides (`A_b` and `a-b`, or two ids sharing a long prefix), so the hash of the exact
    /// requestId is always part of the name.
    package static func jobName(requestId: String) -> String {
        let hash = String(Self.sha256Hex(requestId).prefix(10))
        let prefix = "dispatch-"
        let room = maxNameLength - prefix.count - 1 - hash.count
        let slug = sanitize(requestId, allowed: { $0.isLowercaseAlnum }, lowercase: true, max: room)
        return slug.isEmpty ? "\(prefix)\(hash)" : "\(prefix)\(slug)-\(hash)"
    }

    /// A label value (≤ 63 chars of `[A-Za-z0-9-_.]`, alphanumeric at both ends); the exact value goes in an annotation.
    package static func labelValue(_ value: String) -> String {
        sanitize(value, allowed: { $0.isLabelCharacter }, lowercase: false, max: maxNameLength)
    }

    /// Whether `name` is a valid DNS-1123 label.
    package static func isDNS1123Label(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maxNameLength, let first = name.utf8.first, let last = name.utf8.last else { return false }
        return first.isLowercaseAlnum && last.isLowercaseAlnum && name.utf8.allSatisfy { $0.isLowercaseAlnum || $0 == UInt8(ascii: "-") }
    }

    private static func sanitize(_ value: String, allowed: (UInt8) -> Bool, lowercase: Bool, max: Int) -> String {
        var out: [UInt8] = []
        for var byte in value.utf8 {
            if lowercase, byte >= 65, byte <= 90 { byte += 32 }
            if allowed(byte) {
                out.append(byte)
            } else if out.last != UInt8(ascii: "-") {
                out.append(UInt8(ascii: "-"))
            }
            if out.count >= max { break }
        }
        while let first = out.first, !first.isAlnum { out.removeFirst() }
        while let last = out.last, !last.isAlnum { out.removeLast() }
        return String(decoding: out, as: UTF8.self)
    }
}

extension UInt8 {
    fileprivate var isAlnum: Bool { (48...57).contains(self) || (65...90).contains(self) || (97...122).contains(self) }
    fileprivate var isLowercaseAlnum: Bool { (48...57).contains(self) || (97...122).contains(self) }
    fileprivate var isLabelCharacter: Bool { isAlnum || self == UInt8(ascii: "-") || self == UInt8(ascii: "_") || self == UInt8(ascii: ".") }
}

extension JobNaming {
    /// Lower-case hex SHA-256 of the UTF-8 bytes of `text` (swift-crypto).
    static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
