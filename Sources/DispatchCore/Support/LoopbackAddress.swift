#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which names and addresses mean "this machine only" (CONTRACT §3), decided on the parsed address, never on a
/// string prefix: `127.evil.example` is a DNS name, not loopback.
package enum LoopbackAddress {
    /// Whether a listen address or URL host is loopback: `localhost`, `*.localhost`, an IPv4 address in
    /// 127.0.0.0/8 or `::1` (brackets optional).
    package static func isLoopback(_ host: String) -> Bool {
        let name = host.lowercased()
        if isLocalhostName(name) { return true }
        let bare = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
        if let octets = dottedQuad(bare) { return octets.0 == 127 }
        return isIPv6Loopback(bare)
    }

    /// Whether a `Host` header value names this machine: `localhost`, `*.localhost`, a dotted quad in 127.0.0.0/8
    /// or `[::1]`, each with or without a port.
    package static func isLoopbackHostHeader(_ value: String) -> Bool {
        guard let host = hostPart(ofHostHeader: value) else { return false }
        if host.hasPrefix("[") { return isIPv6Loopback(String(host.dropFirst().dropLast())) }
        if isLocalhostName(host) { return true }
        return dottedQuad(host).map { $0.0 == 127 } ?? false
    }

    /// The host of a `Host` header, lowercased, without its port (`[::1]` keeps its brackets); `nil` when the
    /// value is not a host with an optional numeric port.
    package static func hostPart(ofHostHeader value: String) -> String? {
        let value = value.lowercased()
        guard !value.isEmpty, !value.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else { return nil }
        if value.hasPrefix("[") {
            guard let close = value.firstIndex(of: "]") else { return nil }
            let rest = value[value.index(after: close)...]
            guard rest.isEmpty || isPort(rest) else { return nil }
            return String(value[...close])
        }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: return value
        case 2: return isPort(Substring(":" + parts[1])) && !parts[0].isEmpty ? String(parts[0]) : nil
        default: return nil
        }
    }

    static func isPort(_ text: Substring) -> Bool {
        guard text.first == ":" else { return false }
        let digits = text.dropFirst()
        return !digits.isEmpty && digits.count <= 5 && digits.allSatisfy(\.isASCII) && digits.allSatisfy(\.isNumber)
    }

    static func isLocalhostName(_ name: String) -> Bool {
        let trimmed = name.hasSuffix(".") ? String(name.dropLast()) : name
        guard trimmed == "localhost" || trimmed.hasSuffix(".localhost") else { return false }
        return trimmed.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    /// Four decimal octets `a.b.c.d` (0–255, no leading `+`, no other forms).
    static func dottedQuad(_ text: String) -> (UInt8, UInt8, UInt8, UInt8)? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt8(part) else { return nil }
            octets.append(value)
        }
        return (octets[0], octets[1], octets[2], octets[3])
    }

    static func isIPv6Loopback(_ text: String) -> Bool {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return false }
        return withUnsafeBytes(of: &address) { bytes in bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1 }
    }

    /// Whether a URL host is certainly this machine without asking a resolver: `localhost`, an IPv4 literal in
    /// 127.0.0.0/8 or `::1` (not `*.localhost`, which a resolver without nss-myhostname may send to DNS). Operator
    /// commands send `<state>/token` only there.
    package static func isCertainlyLocal(_ host: String) -> Bool {
        let name = host.lowercased()
        if name == "localhost" { return true }
        let bare = name.hasPrefix("[") && name.hasSuffix("]") ? String(name.dropFirst().dropLast()) : name
        if let octets = dottedQuad(bare) { return octets.0 == 127 }
        return isIPv6Loopback(bare)
    }

    /// The host of an `http(s)://host[:port]/…` URL (IPv6 brackets removed), or `nil`.
    package static func host(ofURL url: String) -> String? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.contains("@") else { return nil }
        guard let host = hostPart(ofHostHeader: String(authority)) else { return nil }
        return host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
    }
}
