/// One entry of an egress allowlist (CONTRACT §10): `host`, `host:port`, `*.domain` (its subdomains, not the domain
/// itself) or `*` (every public host), optionally with a port (`*.example.com:443`, `[2001:db8::1]:443`).
package struct EgressRule: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Which hosts the entry names.
    package enum Hosts: Sendable, Equatable, Hashable {
        /// Every host.
        case any
        /// Exactly this name or address (lowercased, no trailing dot, an IPv6 address without brackets).
        case exact(String)
        /// Every name ending in `.` + this domain.
        case subdomains(of: String)
    }

    package var hosts: Hosts
    /// The port, or `nil` for any.
    package var port: Int?

    package init(hosts: Hosts, port: Int? = nil) {
        self.hosts = hosts
        self.port = port
    }

    /// The entry `text` names, or `nil` when it is not one: an empty name, a bad port, a wildcard anywhere but a
    /// whole first label, characters no host name or address has.
    package init?(_ text: String) {
        let text = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !text.isEmpty, let (host, port) = Self.split(text) else { return nil }
        self.port = port
        if host == "*" {
            hosts = .any
        } else if host.hasPrefix("*.") {
            let domain = Self.normalized(String(host.dropFirst(2)))
            guard Self.isName(domain) else { return nil }
            hosts = .subdomains(of: domain)
        } else {
            let name = Self.normalized(host)
            guard Self.isName(name) || IPAddress(name) != nil else { return nil }
            hosts = .exact(name)
        }
    }

    /// `host` and its port from `text` (`host`, `host:port`, `[v6]`, `[v6]:port`, a bare IPv6 address).
    package static func split(_ text: String) -> (String, Int?)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (host, nil) }
            guard rest.hasPrefix(":"), let port = Self.port(rest.dropFirst()) else { return nil }
            return (host, port)
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 { return (text, nil) }
        guard colons == 1, let colon = text.firstIndex(of: ":") else { return (text, nil) }
        guard let port = Self.port(text[text.index(after: colon)...]) else { return nil }
        return (String(text[..<colon]), port)
    }

    /// A TCP port 1–65535 written in decimal digits only.
    static func port(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy(\.isASCIIDigit), let port = Int(text), (1...65535).contains(port) else {
            return nil
        }
        return port
    }

    /// A host name as compared: lowercased, without a trailing dot or IPv6 brackets.
    package static func normalized(_ host: String) -> String {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        while host.hasSuffix(".") { host.removeLast() }
        return host
    }

    /// Whether `name` is a DNS name: labels of letters, digits, `-` and `_`, 1–63 characters each, 253 in all.
    package static func isName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.allSatisfy { $0.isASCIILetterOrDigit || $0 == "-" || $0 == "_" }
        }
    }

    /// Whether `host` (normalized) is a DNS name or an IP address: what a proxy target must be.
    package static func isHost(_ host: String) -> Bool { isName(host) || IPAddress(host) != nil }

    /// Whether a connection to `host` (normalized) on `port` is one this entry allows.
    package func matches(host: String, port: Int) -> Bool {
        if let own = self.port, own != port { return false }
        switch hosts {
        case .any: return true
        case .exact(let name): return name == host
        case .subdomains(let domain): return host.hasSuffix("." + domain)
        }
    }

    /// Whether everything `other` allows, this entry allows too (a request's entry within the operator's).
    package func covers(_ other: EgressRule) -> Bool {
        if let own = port, other.port != own { return false }
        switch (hosts, other.hosts) {
        case (.any, _): return true
        case (.exact(let mine), .exact(let theirs)): return mine == theirs
        case (.subdomains(let mine), .exact(let theirs)): return theirs.hasSuffix("." + mine)
        case (.subdomains(let mine), .subdomains(let theirs)): return theirs == mine || theirs.hasSuffix("." + mine)
        case (.exact, _), (.subdomains, .any): return false
        }
    }

    package var description: String {
        let host: String
        switch hosts {
        case .any: host = "*"
        case .exact(let name): host = name.contains(":") ? "[\(name)]" : name
        case .subdomains(let domain): host = "*.\(domain)"
        }
        return port.map { "\(host):\($0)" } ?? host
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
    var isASCIILetterOrDigit: Bool { isASCII && (isLetter || isNumber) }
}

/// A list of ``EgressRule``s: what a run's agent may connect to by name.
package struct EgressAllowlist: Sendable, Equatable {
    package var rules: [EgressRule]

    package init(_ rules: [EgressRule] = []) { self.rules = rules }

    /// The hosts the three CLIs need for their models and logins: the default of `DISPATCH_EGRESS_ALLOW`.
    package static let cliDefaults = [
        "api.openai.com", "chatgpt.com", "auth.openai.com", "api.anthropic.com", "console.anthropic.com", "statsig.anthropic.com",
        "claude.ai", "generativelanguage.googleapis.com", "openrouter.ai",
    ]

    /// Parses a comma-separated list; the first entry that is not a rule is named in the error.
    package static func parse(_ text: String, variable: String) throws(EgressConfigurationError) -> EgressAllowlist {
        var rules: [EgressRule] = []
        for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            guard let rule = EgressRule(entry) else {
                throw EgressConfigurationError("\(variable): \"\(entry.prefix(100))\" is not a host, host:port, *.domain or *")
            }
            rules.append(rule)
        }
        return EgressAllowlist(rules)
    }

    /// Whether some entry allows `host` (normalized) on `port`.
    package func allows(host: String, port: Int) -> Bool { rules.contains { $0.matches(host: host, port: port) } }

    /// Whether some entry covers all of `rule`.
    package func covers(_ rule: EgressRule) -> Bool { rules.contains { $0.covers(rule) } }
}

/// A bad `DISPATCH_EGRESS_*` setting: what is wrong, in words naming the variable (exit 2 at start-up).
package struct EgressConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    package var description: String

    package init(_ description: String) { self.description = description }
}
