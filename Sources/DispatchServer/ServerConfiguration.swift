import DispatchCore
import Dispatcher
import Execution
import Foundation

/// Settings of the HTTP service.
package struct ServerConfiguration: Sendable {
    package var host: String
    package var port: Int
    /// The admin token for `/internal/*` (there is no unauthenticated mode).
    package var token: String
    /// Names accepted in `Host` on a loopback listener besides this machine's (reverse proxies), lowercased.
    package var allowedHosts: Set<String>
    /// Largest accepted request body.
    package var maxBodyBytes: Int
    /// Longest accepted `timeoutMs` of `agent-await`.
    package var maxAwaitMs: Int
    /// How long running dispatches get to finish on SIGTERM before they are cancelled.
    package var drainSeconds: Double
    /// How often the sandbox janitor sweeps.
    package var janitorInterval: Duration
    /// How agents are contained (`bwrap` or `none`), for `GET /`.
    package var isolation = "none"
    /// What controls agents' network (CONTRACT §10): `proxy` under isolation, else `none`.
    package var egress = "none"
    /// The connection cap and timeouts (CONTRACT §7).
    package var connections = ConnectionLimits(maxConnections: 1024)

    package init(
        host: String = "127.0.0.1",
        port: Int = 3111,
        token: String,
        allowedHosts: [String] = [],
        maxBodyBytes: Int = 1 << 20,
        maxAwaitMs: Int = 300_000,
        drainSeconds: Double = 10,
        janitorInterval: Duration = .seconds(600)
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
        self.maxBodyBytes = maxBodyBytes
        self.maxAwaitMs = maxAwaitMs
        self.drainSeconds = drainSeconds
        self.janitorInterval = janitorInterval
    }

    /// Whether the listen address only accepts connections from this machine (then every route checks `Host`).
    package var isLoopback: Bool { LoopbackAddress.isLoopback(host) }

    /// Per-request callback tokens, derived from the admin token.
    package var callbackTokens: CallbackTokens { CallbackTokens(adminToken: token) }
}
