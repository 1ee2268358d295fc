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
        var lookups = 0
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

    /// Tracks a connection to a destination, so that the run's end closes it too; `false` when the run has ended
    /// (then the caller closes it).
    func adopt(upstream channel: any Channel) -> Bool {
        let taken = state.withLock { state in
            guard !state.closed else { return false }
            state.channels[ObjectIdentifier(channel)] = channel
            return true
        }
        if taken { channel.closeFuture.whenComplete { [self] _ in state.withLock { $0.channels[ObjectIdentifier(channel)] = nil } } }
        return taken
    }

    /// Forgets a connection that closed.
    func release(_ channel: any Channel) {
        state.withLock { state in
            state.open.remove(ObjectIdentifier(channel))
            state.channels[ObjectIdentifier(channel)] = nil
        }
    }

    /// Counts a name lookup starting; `false` when the run has ``EgressLimits/lookupsPerRun`` under way.
    func startLookup() -> Bool {
        state.withLock { state in
            guard state.lookups < limits.lookupsPerRun else { return false }
            state.lookups += 1
            return true
        }
    }

    /// Counts a name lookup that ended.
    func endLookup() { state.withLock { $0.lookups -= 1 } }

    /// Adds what a previous runner's part of the run recorded (a run handed off).
    func carry(_ report: NetworkReport) {
        state.withLock { $0.report.merge(report) }
    }

    /// Records a refused connection to `host:port`, logs the first one to each destination and counts it. Only a
    /// destination that gets an entry of its own is logged: past the report's bound an agent trying ever new names
    /// would otherwise write a line each.
    func deny(host: String, port: Int, reason: String) {
        let first = state.withLock { state in
            let listed = { (report: NetworkReport) in report.denied.contains { $0.host == host && $0.port == port } }
            let known = listed(state.report)
            let denial = NetworkReport.Denial(host: host, port: port, count: 1, firstAt: ISO8601.string(Date()), reason: reason)
            state.report.merge(NetworkReport(policy: state.report.policy, denied: [denial]))
            return !known && listed(state.report)
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

    /// Stops listening, ends every open connection (the agent's and the destinations') and returns the report once
    /// they have closed and counted their bytes — or after ``EgressLimits/closeTimeout``, the report as it stands.
    package func close() async -> NetworkReport {
        let (listener, channels) = state.withLock { state in
            state.closed = true
            let taken = (state.listener, Array(state.channels.values))
            state.listener = nil
            state.channels = [:]
            return taken
        }
        let all = (listener.map { [$0] } ?? []) + channels
        for channel in all { channel.close(promise: nil) }
        unlink(socketPath)
        if let loop = all.first?.eventLoop {
            // Whichever comes first (a second completion of the promise is ignored).
            let ended = loop.makePromise(of: Void.self)
            EventLoopFuture.andAllComplete(all.map(\.closeFuture), on: loop).cascade(to: ended)
            let deadline = loop.scheduleTask(in: limits.closeTimeout) { ended.succeed() }
            _ = try? await ended.futureResult.get()
            deadline.cancel()
            // The sides' counts are added on the loop as each closes: wait for what is queued there.
            _ = try? await loop.submit {}.get()
        }
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

    /// A side stops being read while its partner holds more than the high mark unwritten, and is read again below the
    /// low one: with ``reads`` and ``readsPerWake``, what one connection holds stays under 512 KiB each way.
    static let watermark = WriteBufferWaterMark(low: 64 << 10, high: 256 << 10)
    /// Reads of up to 128 KiB (fewer syscalls and wake-ups for a bulk transfer; small ones stay small).
    static let reads = AdaptiveRecvByteBufferAllocator(minimum: 2048, initial: 16 << 10, maximum: 128 << 10)
    /// Reads per wake-up before the partner's writability is looked at again.
    static let readsPerWake: UInt = 2

    /// How long the run's end waits for its connections to close before it reports.
    package var closeTimeout: TimeAmount = .seconds(2)
    /// Name lookups one run may have under way at once; more are answered `503`.
    package var lookupsPerRun = 16
    /// How long a name lookup may take before the request is answered `504`.
    package var lookupTimeout: TimeAmount = .seconds(10)

    package init(connectionsPerRun: Int = 256, headTimeout: TimeAmount = .seconds(30), connectTimeout: TimeAmount = .seconds(15)) {
        self.connectionsPerRun = connectionsPerRun
        self.headTimeout = headTimeout
        self.connectTimeout = connectTimeout
    }
}
