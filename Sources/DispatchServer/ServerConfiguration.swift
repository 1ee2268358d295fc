import Foundation

/// Settings of the HTTP service.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The bearer token for `/internal/*`; required unless the address is loopback.
    public var token: String?
    /// Largest accepted request body.
    public var maxBodyBytes: Int
    /// Longest accepted `timeoutMs` of `agent-await`.
    public var maxAwaitMs: Int
    /// How long running dispatches get to finish on SIGTERM before they are cancelled.
    public var drainSeconds: Double
    /// How often the sandbox janitor sweeps.
    public var janitorInterval: Duration

    public init(
        host: String = "127.0.0.1", port: Int = 3111, token: String? = nil, maxBodyBytes: Int = 1 << 20, maxAwaitMs: Int = 300_000,
        drainSeconds: Double = 10, janitorInterval: Duration = .seconds(600)
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.maxBodyBytes = maxBodyBytes
        self.maxAwaitMs = maxAwaitMs
        self.drainSeconds = drainSeconds
        self.janitorInterval = janitorInterval
    }

    /// Whether `host` only accepts connections from this machine.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}
