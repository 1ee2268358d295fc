/// What a request asks of the network (CONTRACT §10): nothing at all, or only some of the hosts the operator allows.
package enum NetworkRequest: Sendable, Equatable, Codable {
    /// `"none"`: no connection leaves the agent's namespace.
    case none
    /// `{"allow": [...]}`: only these entries (each within the operator's allowlist).
    case allow([EgressRule])

    package init(from decoder: any Decoder) throws {
        if let word = try? decoder.singleValueContainer().decode(String.self), word == "none" {
            self = .none
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let entries = try container.decode([String].self, forKey: .allow)
        var rules: [EgressRule] = []
        for entry in entries {
            guard let rule = EgressRule(entry) else {
                throw DecodingError.dataCorruptedError(forKey: .allow, in: container, debugDescription: "\(entry) is not a host")
            }
            rules.append(rule)
        }
        self = .allow(rules)
    }

    package func encode(to encoder: any Encoder) throws {
        switch self {
        case .none:
            var container = encoder.singleValueContainer()
            try container.encode("none")
        case .allow(let rules):
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(rules.map(\.description), forKey: .allow)
        }
    }

    enum CodingKeys: String, CodingKey { case allow }
}

/// The operator's egress settings: `DISPATCH_EGRESS_ALLOW` (default: the CLIs' hosts) and
/// `DISPATCH_EGRESS_ALLOW_PRIVATE` (addresses agents may reach although they are loopback, private or link-local).
package struct EgressSettings: Sendable, Equatable {
    package var allow: EgressAllowlist
    package var allowPrivate: [AddressAllowance]

    package init(allow: EgressAllowlist = EgressAllowlist(), allowPrivate: [AddressAllowance] = []) {
        self.allow = allow
        self.allowPrivate = allowPrivate
    }

    /// Reads the two variables; a bad entry is an error naming the variable and the entry.
    package init(environment env: [String: String]) throws(EgressConfigurationError) {
        let allowText = env["DISPATCH_EGRESS_ALLOW"].nonEmpty ?? EgressAllowlist.cliDefaults.joined(separator: ",")
        allow = try EgressAllowlist.parse(allowText, variable: "DISPATCH_EGRESS_ALLOW")
        allowPrivate = []
        for entry in (env["DISPATCH_EGRESS_ALLOW_PRIVATE"] ?? "").split(separator: ",").map(String.init) {
            guard !entry.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            guard let allowance = AddressAllowance(entry) else {
                throw EgressConfigurationError(
                    "DISPATCH_EGRESS_ALLOW_PRIVATE: \"\(entry.prefix(100))\" is not an address, address:port or address/prefix"
                )
            }
            allowPrivate.append(allowance)
        }
    }

    /// Why the operator does not allow what `network` asks for (an entry outside the allowlist), or `nil`.
    package func refusal(of network: NetworkRequest?) -> RequestValidationError? {
        guard case .allow(let rules)? = network else { return nil }
        for (index, rule) in rules.enumerated() where !covers(rule) {
            return RequestValidationError(
                field: "network",
                message: "allow[\(index)] \"\(rule)\" is not allowed by this runner (DISPATCH_EGRESS_ALLOW); a request may only narrow it"
            )
        }
        return nil
    }

    /// Whether the operator allows all of `rule`: by the allowlist, or as an address it lets agents reach.
    func covers(_ rule: EgressRule) -> Bool {
        if allow.covers(rule) { return true }
        guard case .exact(let host) = rule.hosts, let address = IPAddress(host) else { return false }
        return allowPrivate.contains { allowance in
            allowance.contains(address, port: rule.port ?? 0) && (allowance.port == nil || rule.port != nil)
        }
    }

    /// The policy of one run: the operator's allowlist with the host of the run's repository (`repoHost`), or what
    /// the request narrowed it to.
    package func policy(for network: NetworkRequest?, repoHost: String?) -> EgressPolicy {
        switch network {
        case .none?:
            return EgressPolicy(kind: .none, allow: EgressAllowlist(), allowPrivate: [])
        case .allow(let rules)?:
            return EgressPolicy(kind: .request, allow: EgressAllowlist(rules), allowPrivate: allowPrivate)
        case nil:
            var allow = self.allow
            if let repoHost, let rule = EgressRule(repoHost), !allow.covers(rule) { allow.rules.append(rule) }
            return EgressPolicy(kind: .operator, allow: allow, allowPrivate: allowPrivate)
        }
    }
}

/// What one run's agent may connect to (CONTRACT §10), decided by the egress proxy for each connection: first by name
/// (the allowlist), then by every address the name resolved to.
package struct EgressPolicy: Sendable, Equatable {
    /// Where the policy came from: the result's `network.policy`.
    package enum Kind: String, Sendable, Codable {
        /// The operator's allowlist (and the run's repository host).
        case `operator`
        /// The request's `network.allow`.
        case request
        /// The request's `network: "none"`.
        case none
    }

    package var kind: Kind
    package var allow: EgressAllowlist
    package var allowPrivate: [AddressAllowance]
    /// The port `serve` listens on: refused on this machine's addresses whatever the allowances say (an allowance
    /// of all of 127.0.0.1 must not open the runner's own API to its agents).
    package var runnerPort: Int?

    package init(kind: Kind, allow: EgressAllowlist, allowPrivate: [AddressAllowance]) {
        self.kind = kind
        self.allow = allow
        self.allowPrivate = allowPrivate
    }

    /// Why a connection to `host` on `port` is refused before its name is resolved, or `nil` when it may go on.
    /// An address the operator lets agents reach (`DISPATCH_EGRESS_ALLOW_PRIVATE`) is allowed by name too, unless the
    /// request narrowed the list without it.
    package func refusal(host: String, port: Int) -> String? {
        if kind == .none { return "the request allows no network" }
        if allow.allows(host: host, port: port) { return nil }
        if kind == .operator, let address = IPAddress(host), allowPrivate.contains(where: { $0.contains(address, port: port) }) {
            return nil
        }
        return kind == .request ? "not in the request's network.allow" : "not in DISPATCH_EGRESS_ALLOW"
    }

    /// Why a connection to `address` on `port` is refused (loopback, private, link-local, multicast, this machine's own),
    /// or `nil`. `own` holds this machine's addresses.
    package func refusal(address: IPAddress, port: Int, own: Set<IPAddress>) -> String? {
        let mine = own.contains(address) || address.embeddedV4.map(own.contains) == true
        let restriction = address.restriction ?? (mine ? "this machine" : nil)
        guard let restriction else { return nil }
        if let runnerPort, port == runnerPort, mine || restriction == "loopback" { return "the runner's own port" }
        if allowPrivate.contains(where: { $0.contains(address, port: port) }) { return nil }
        return "resolves to \(address) (\(restriction))"
    }
}
