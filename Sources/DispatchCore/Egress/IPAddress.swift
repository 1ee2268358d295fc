#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as its bytes (4 or 16), parsed strictly (`inet_pton`: no `0x7f.1`, no `2130706433`).
package struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6, in network order.
    package var bytes: [UInt8]

    package init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// The address `text` spells (IPv6 with or without brackets), or `nil`.
    package init?(_ text: String) {
        let bare = text.hasPrefix("[") && text.hasSuffix("]") ? String(text.dropFirst().dropLast()) : text
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, bare, &v6) == 1 else { return nil }
        bytes = withUnsafeBytes(of: &v6) { Array($0) }
    }

    package var isV4: Bool { bytes.count == 4 }

    /// The IPv4 address an IPv6 one carries (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`,
    /// 6to4 `2002:AABB:CCDD::/16`): where a connection to it really goes.
    package var embeddedV4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        let prefix = bytes[0..<12]
        if prefix.elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]) { return IPAddress(bytes: Array(bytes[12..<16])) }
        if prefix.allSatisfy({ $0 == 0 }), bytes[12..<16].contains(where: { $0 != 0 }), !(bytes[12..<15].allSatisfy { $0 == 0 } && bytes[15] == 1) {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if prefix.elementsEqual([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]) { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0] == 0x20, bytes[1] == 0x02 { return IPAddress(bytes: Array(bytes[2..<6])) }
        return nil
    }

    package var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var copy = bytes
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard inet_ntop(family, &copy, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(cString: buffer)
    }

    /// Why an agent may not connect to this address whatever name led to it (CONTRACT §10), or `nil` for a public
    /// address: loopback, link-local (the cloud metadata address among them), private, shared (CGNAT), multicast,
    /// broadcast, unspecified or reserved — judged on the IPv4 address an IPv6 one carries, when it carries one.
    package var restriction: String? {
        if let inner = embeddedV4 { return inner.restriction }
        return isV4 ? Self.v4Restriction(bytes) : Self.v6Restriction(bytes)
    }

    static func v4Restriction(_ b: [UInt8]) -> String? {
        switch (b[0], b[1]) {
        case (0, _): return "unspecified"
        case (127, _): return "loopback"
        case (169, 254): return "link-local"
        case (10, _), (172, 16...31), (192, 168): return "private"
        case (100, 64...127): return "private"
        case (192, 0) where b[2] == 0 || b[2] == 2: return "reserved"
        case (198, 18...19): return "reserved"
        case (198, 51) where b[2] == 100, (203, 0) where b[2] == 113: return "reserved"
        case (224...239, _): return "multicast"
        case (240...255, _): return "reserved"
        default: return nil
        }
    }

    static func v6Restriction(_ b: [UInt8]) -> String? {
        if b.allSatisfy({ $0 == 0 }) { return "unspecified" }
        if b[0..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return "loopback" }
        if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return "link-local" }
        if b[0] == 0xfe && b[1] & 0xc0 == 0xc0 { return "private" }
        if b[0] & 0xfe == 0xfc { return "private" }
        if b[0] == 0xff { return "multicast" }
        if b[0] == 0x20, b[1] == 0x01, b[2] == 0x0d, b[3] == 0xb8 { return "reserved" }
        if b[0] == 0x01, b[1..<8].allSatisfy({ $0 == 0 }) { return "reserved" }
        return nil
    }
}

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address), optionally with a port: an entry of
/// `DISPATCH_EGRESS_ALLOW_PRIVATE`.
package struct AddressAllowance: Sendable, Equatable, CustomStringConvertible {
    package var network: IPAddress
    package var prefixLength: Int
    package var port: Int?

    /// The entry `text` names (`127.0.0.1`, `127.0.0.1:8080`, `[::1]:8080`, `10.0.0.0/8`), or `nil`.
    package init?(_ text: String) {
        var text = text.trimmingCharacters(in: .whitespaces)
        var length: Int?
        if let slash = text.lastIndex(of: "/") {
            guard let bits = Int(text[text.index(after: slash)...]) else { return nil }
            length = bits
            text = String(text[..<slash])
        }
        guard let (host, port) = EgressRule.split(text), let address = IPAddress(host) else { return nil }
        let full = address.bytes.count * 8
        guard (0...full).contains(length ?? full) else { return nil }
        network = address
        prefixLength = length ?? full
        self.port = port
    }

    /// Whether `address` on `port` is inside this entry (an IPv6 address carrying an IPv4 one compared as that).
    package func contains(_ address: IPAddress, port: Int) -> Bool {
        if let own = self.port, own != port { return false }
        let address = address.embeddedV4.flatMap { network.isV4 ? $0 : nil } ?? address
        guard address.bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for (mine, theirs) in zip(network.bytes, address.bytes) where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if mine & mask != theirs & mask { return false }
            remaining -= bits
        }
        return true
    }

    package var description: String {
        let host = network.isV4 ? network.description : "[\(network)]"
        let range = prefixLength == network.bytes.count * 8 ? host : "\(host)/\(prefixLength)"
        return port.map { "\(range):\($0)" } ?? range
    }
}
