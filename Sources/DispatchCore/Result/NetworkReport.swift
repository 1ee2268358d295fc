import Foundation

/// What a run's agent did on the network (CONTRACT §10): the result's `network`. Every refused connection is counted;
/// the lists are bounded (``maxEntries`` destinations each), what did not fit is counted in `omitted`.
package struct NetworkReport: Codable, Sendable, Equatable {
    /// Where the policy came from: `operator`, `request` or `none`.
    package var policy: EgressPolicy.Kind
    package var denied: [Denial]
    package var allowed: [Allowance]
    /// Destinations left out of the lists (refused, allowed), when any were.
    package var omitted: Omitted?

    /// Refused connections to one destination.
    package struct Denial: Codable, Sendable, Equatable {
        package var host: String
        package var port: Int
        package var count: Int
        package var firstAt: String
        package var reason: String

        package init(host: String, port: Int, count: Int, firstAt: String, reason: String) {
            self.host = host
            self.port = port
            self.count = count
            self.firstAt = firstAt
            self.reason = reason
        }
    }

    /// Allowed connections to one destination and the bytes they carried.
    package struct Allowance: Codable, Sendable, Equatable {
        package var host: String
        package var port: Int
        package var connections: Int
        package var bytesOut: Int64
        package var bytesIn: Int64

        package init(host: String, port: Int, connections: Int, bytesOut: Int64, bytesIn: Int64) {
            self.host = host
            self.port = port
            self.connections = connections
            self.bytesOut = bytesOut
            self.bytesIn = bytesIn
        }
    }

    /// How many destinations (and connections to them) did not fit in the lists.
    package struct Omitted: Codable, Sendable, Equatable {
        package var denied: Int
        package var allowed: Int

        package init(denied: Int, allowed: Int) {
            self.denied = denied
            self.allowed = allowed
        }
    }

    /// Most destinations each list holds.
    package static let maxEntries = 50

    package init(policy: EgressPolicy.Kind, denied: [Denial] = [], allowed: [Allowance] = [], omitted: Omitted? = nil) {
        self.policy = policy
        self.denied = denied
        self.allowed = allowed
        self.omitted = omitted
    }

    /// How many connections were refused in all (those left out of the list included).
    package var deniedConnections: Int { denied.reduce(0) { $0 + $1.count } + (omitted?.denied ?? 0) }

    /// The words a failed attempt's error ends with when connections were refused: "(2 connections refused by the
    /// egress policy: github.com:443, pypi.org:443)"; `nil` when none were.
    package var denialSentence: String? {
        let count = deniedConnections
        guard count > 0 else { return nil }
        let shown = denied.prefix(5).map { "\($0.host.contains(":") ? "[\($0.host)]" : $0.host):\($0.port)" }
        let more = denied.count > 5 || omitted.map { $0.denied > 0 } == true ? ", …" : ""
        return "(\(count) connection\(count == 1 ? "" : "s") refused by the egress policy: \(shown.joined(separator: ", "))\(more))"
    }

    /// Adds what `other` (a later part of the same run: another attempt, a verification) recorded.
    package mutating func merge(_ other: NetworkReport) {
        for denial in other.denied {
            if let index = denied.firstIndex(where: { $0.host == denial.host && $0.port == denial.port }) {
                denied[index].count += denial.count
            } else if denied.count < Self.maxEntries {
                denied.append(denial)
            } else {
                omitted = Omitted(denied: (omitted?.denied ?? 0) + denial.count, allowed: omitted?.allowed ?? 0)
            }
        }
        for allowance in other.allowed {
            if let index = allowed.firstIndex(where: { $0.host == allowance.host && $0.port == allowance.port }) {
                allowed[index].connections += allowance.connections
                allowed[index].bytesOut += allowance.bytesOut
                allowed[index].bytesIn += allowance.bytesIn
            } else if allowed.count < Self.maxEntries {
                allowed.append(allowance)
            } else {
                omitted = Omitted(denied: omitted?.denied ?? 0, allowed: (omitted?.allowed ?? 0) + allowance.connections)
            }
        }
        if let more = other.omitted {
            omitted = Omitted(denied: (omitted?.denied ?? 0) + more.denied, allowed: (omitted?.allowed ?? 0) + more.allowed)
        }
    }
}
