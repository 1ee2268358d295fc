import AgentProcess
import DispatchCore
import Dispatcher
import Foundation
import Hummingbird
import Logging
import NIOCore
import Sandbox
import ServiceLifecycle

/// The HTTP service: Hummingbird app plus the dispatch lifecycle, in one ServiceGroup.
///
/// Services shut down in reverse order, so on SIGTERM the dispatch service drains first while the HTTP
/// server still answers result and await queries; the server stops after every dispatch is terminal.
package enum DispatchApplication {
    /// Builds the router with every route of CONTRACT §3.
    package static func buildRouter(service: DispatchService, configuration: ServerConfiguration) -> Router<DispatchRequestContext> {
        let router = Router(context: DispatchRequestContext.self)
        // Outermost, so it sees every request (also 404 and 421) with its final status, counted per route
        // (`http_route="/internal/agent-result/{requestId}"`); errors reach it as JSON responses, so failures show as
        // status codes and `hb_request_errors` stays empty. It records nothing until `ServerMetrics.bootstrapOnce()`.
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: JSONErrorMiddleware())
        // Host first, before any route (also /healthz, /metrics): DNS rebinding gets nothing from a loopback listener.
        if configuration.isLoopback { router.add(middleware: HostCheckMiddleware(allowedHosts: configuration.allowedHosts)) }
        router.add(middleware: JSONContentTypeMiddleware())
        DispatchRoutes(service: service, configuration: configuration, startedAt: Date(), callbackTokens: configuration.callbackTokens).register(
            on: router
        )
        return router
    }

    /// Runs until SIGTERM/SIGINT, then drains. `onListening` gets the bound port (useful with port 0).
    ///
    /// First points the global swift-metrics API at the process-wide registry (``ServerMetrics/bootstrapOnce()``).
    package static func run(
        service: DispatchService,
        configuration: ServerConfiguration,
        logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        ServerMetrics.bootstrapOnce()
        let limits = configuration.connections
        let headTimeout = TimeAmount.nanoseconds(Int64(limits.requestHeadTimeout.components.seconds) * 1_000_000_000)
        let app = Application(
            router: buildRouter(service: service, configuration: configuration),
            // A handler per connection for the head timeout; the idle timeout never counts a request in progress.
            server: .http1(
                configuration: .init(
                    additionalChannelHandlers: [RequestHeadTimeoutHandler(timeout: headTimeout)],
                    idleTimeout: .seconds(limits.idleTimeout.components.seconds)
                )
            ),
            // At the cap the listener stops accepting until a connection closes: serve keeps its descriptors.
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "agent-dispatch",
                availableConnectionsDelegate: .maximum(limits.maxConnections, logger: logger)
            ),
            onServerRunning: { channel in
                // One accept per wake-up, so the cap is exact.
                try? await channel.setOption(ChannelOptions.maxMessagesPerRead, value: 1)
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
                await onListening(port)
            },
            logger: logger
        )
        // Stopped in reverse order: the dispatches drain first while the server still answers; leases are renewed
        // until the very end.
        // A service that fails (a listener that cannot bind) shuts the group down gracefully, never by cancellation:
        // cancelling `DispatchService` would cancel its runs (k8s Jobs deleted, agents a hand-off must leave killed).
        let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: LeaseKeeper(service: service, logger: logger), failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(
                service: JanitorService(
                    janitor: SandboxJanitor(store: service.engine.store, runsDirectory: "\(service.engine.configuration.stateDir)/runs"),
                    interval: configuration.janitorInterval,
                    logger: logger
                ),
                failureTerminationBehavior: .gracefullyShutdownGroup
            ),
            .init(service: app, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: service, failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Periodic sandbox janitor sweeps until graceful shutdown.
struct JanitorService: Service {
    let janitor: SandboxJanitor
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // A timer on the process runtime; cancelling (graceful shutdown) returns at once.
                await ProcessRuntime.shared.sleep(for: interval)
                guard !Task.isCancelled else { return }
                do {
                    let actions = try await janitor.sweep()
                    if !actions.isEmpty { logger.info("janitor sweep", metadata: ["actions": "\(actions.count)"]) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("janitor sweep failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
