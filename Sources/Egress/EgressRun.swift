import DispatchCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// One run's way out (CONTRACT §10): a unix socket the proxy listens on, bound into the run's namespace, whose every
/// connection is judged by the run's policy and counted in its report. The run is known by the socket a connection
/// came in on, never by anything the agent says.
package final class EgressRun: Sendable {
    /// The socket's path (inside the run's egress directory, which the namespace binds).
    package let socketPath: String
    /// The policy every connection is judged by.
    package let policy: EgressPolicy
    /// The request, for logs.
    let requestId: String
    /// The agent's tool, for `dispatch_egress_denied_total{tool}`.
    let tool: String
    let logger: Logger
    let limits: EgressLimits
    let onDenied: @Sendable (String) -> Void

    private struct State {
        var report: NetworkReport
        var open: Set<ObjectIdentifier> = []
        var channels: [ObjectIdentifier: any Channel] = [:]
        var listener: (any Channel)?
        var closed = false
    }

    private let state: Mutex<State>

    init(
        socketPath: String,
        policy: EgressPolicy,
        requestId: String,
        tool: String,
        limits: EgressLimits,
        logger: Logger,
        onDenied: @escaping @Sendable (String) -> Void
    ) {
        self.socketPath = socketPath
        self.policy = policy
        self.requestId = requestId
        self.tool = tool
        self.limits = limits
        self.logger = logger
        self.onDenied = onDenied
        state = Mutex(State(report: NetworkReport(policy: policy.kind)))
    }

    /// What the run's agent did on the network so far.
    package var report: NetworkReport { state.withLock { $0.report } }

    /// Connections open now.
    package var openConnections: Int { state.withLock { $0.open.count } }

    func listening(on channel: any Channel) {
        let closeNow = state.withLock { state in
            state.listener = channel
            return state.closed
        }
        if closeNow { channel.close(promise: nil) }
    }

    /// Takes a new connection unless the run has as many open as it may (or ended); `false`: refuse it.
    func admit(_ channel: any Channel) -> Bool {
        state.withLock { state in
            guard !state.closed, state.open.count < limits.connectionsPerRun else { return false }
            state.open.insert(ObjectIdentifier(channel))
            state.channels[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    /// Forgets a connection that closed.
    func release(_ channel: any Channel) {
        state.withLock { state in
            state.open.remove(ObjectIdentifier(channel))
            state.channels[ObjectIdentifier(channel)] = nil
        }
    }

    /// Records a refused connection to `host:port`, logs the first one to each destination and counts it.
    func deny(host: String, port: Int, reason: String) {
        let first = state.withLock { state in
            let known = state.report.denied.contains { $0.host == host && $0.port == port }
            let denial = NetworkReport.Denial(host: host, port: port, count: 1, firstAt: ISO8601.string(Date()), reason: reason)
            state.report.merge(NetworkReport(policy: state.report.policy, denied: [denial]))
            return !known
        }
        onDenied(tool)
        if first {
            logger.notice(
                "egress refused",
                metadata: ["request.id": "\(requestId)", "egress.host": "\(host)", "egress.port": "\(port)", "egress.reason": "\(reason)"]
            )
        }
    }

    /// Records an allowed connection to `host:port` that carried `bytesOut` and `bytesIn` (counted as it closes).
    func account(host: String, port: Int, bytesOut: Int64, bytesIn: Int64) {
        state.withLock { state in
            let allowance = NetworkReport.Allowance(host: host, port: port, connections: 1, bytesOut: bytesOut, bytesIn: bytesIn)
            state.report.merge(NetworkReport(policy: state.report.policy, allowed: [allowance]))
        }
    }

    /// Stops listening and ends every open connection; returns the report. Connections still closing add their
    /// bytes to ``report`` as they go, but no new one is taken.
    package func close() -> NetworkReport {
        let (listener, channels, report) = state.withLock { state in
            state.closed = true
            let taken = (state.listener, Array(state.channels.values), state.report)
            state.listener = nil
            state.channels = [:]
            return taken
        }
        listener?.close(promise: nil)
        for channel in channels { channel.close(promise: nil) }
        unlink(socketPath)
        return report
    }
}

/// Bounds on what one run's connections may take.
package struct EgressLimits: Sendable, Equatable {
    /// Connections one run may have open at once; more are refused (and counted as refused).
    package var connectionsPerRun: Int
    /// How long a new connection may take to send its request head.
    package var headTimeout: TimeAmount
    /// How long connecting to a destination may take.
    package var connectTimeout: TimeAmount

    package init(connectionsPerRun: Int = 256, headTimeout: TimeAmount = .seconds(30), connectTimeout: TimeAmount = .seconds(15)) {
        self.connectionsPerRun = connectionsPerRun
        self.headTimeout = headTimeout
        self.connectTimeout = connectTimeout
    }
}
