import AgentProcess
import Logging
import ServiceLifecycle

/// Keeps this runner's leases alive and recovers rows whose owner stopped renewing, every third of a lease.
///
/// List it first in the `ServiceGroup`: services stop in reverse order, so it renews through the drain of
/// ``DispatchService`` and stops last.
package struct LeaseKeeper: Service {
    let service: DispatchService
    let logger: Logger

    /// Upkeep for `service`'s rows.
    package init(service: DispatchService, logger: Logger) {
        self.service = service
        self.logger = logger
    }

    /// Runs upkeep until graceful shutdown or cancellation.
    package func run() async throws {
        let period = service.upkeepPeriod
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                // A timer on the process runtime; cancelling (graceful shutdown) returns at once.
                await ProcessRuntime.shared.sleep(for: period)
                guard !Task.isCancelled else { return }
                do {
                    try await service.upkeep()
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("lease upkeep failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
