import DispatchCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The runner's egress proxy (CONTRACT §10): HTTP `CONNECT` and plain-HTTP forwarding for every isolated run, on
/// one event loop — a run's agent reaches it through a bridge in its own network namespace and a unix socket that
/// is the run's alone. Names are resolved here, never by the agent; a destination passes the run's policy by name
/// and then by every address it resolved to. Memory per connection is bounded: a side is read only while the other
/// can take what is read.
package final class EgressProxy: Sendable {
    let loop: any EventLoop
    let resolver = EgressResolver()
    let limits: EgressLimits
    let onDenied: @Sendable (String) -> Void

    /// A proxy on one loop of NIO's shared group; `onDenied(tool)` is called for every refused connection.
    package init(limits: EgressLimits = EgressLimits(), onDenied: @escaping @Sendable (String) -> Void = { _ in }) {
        loop = MultiThreadedEventLoopGroup.singleton.next()
        self.limits = limits
        self.onDenied = onDenied
    }

    /// Starts listening for one run at `socketPath` (an existing socket there is replaced: a runner adopting a run
    /// listens where its agent's bridge connects). The socket is `0666` inside a directory only the run sees.
    package func open(
        socketPath: String,
        policy: EgressPolicy,
        requestId: String,
        tool: String,
        carried: NetworkReport? = nil,
        logger: Logger
    ) async throws -> EgressRun {
        let run = EgressRun(
            socketPath: socketPath,
            policy: policy,
            requestId: requestId,
            tool: tool,
            limits: limits,
            logger: logger,
            onDenied: onDenied
        )
        if let carried { run.carry(carried) }
        let resolver = self.resolver
        // A socket's address holds 107 bytes of path: a longer one is reached through the directory's descriptor
        // (`/proc/self/fd/N/name`), as the bridge reaches it from inside that directory.
        let directory = (socketPath as NSString).deletingLastPathComponent
        let directoryFd = socketPath.utf8.count > 100 ? Foundation.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
        defer { if directoryFd >= 0 { close(directoryFd) } }
        let bindPath = directoryFd >= 0 ? "/proc/self/fd/\(directoryFd)/\((socketPath as NSString).lastPathComponent)" : socketPath
        let channel = try await ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.autoRead, value: false)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: EgressLimits.watermark)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.recvAllocator, value: EgressLimits.reads)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: EgressLimits.readsPerWake)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard run.admit(channel) else {
                        run.deny(host: "*", port: 0, reason: "connection limit (\(run.limits.connectionsPerRun) open)")
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in run.release(channel) }
                    let handler = EgressConnectionHandler(run: run, resolver: resolver)
                    // A head (and whatever an agent sends before its answer) is held up to a bound, never without one.
                    let decoder = HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(decoder, maximumBufferSize: 256 << 10))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(unixDomainSocketPath: bindPath, cleanupExistingSocketFile: true)
            .get()
        chmod(socketPath, 0o666)
        run.listening(on: channel)
        return run
    }
}
