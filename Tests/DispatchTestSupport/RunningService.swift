import Dispatcher
import ServiceLifecycle
import ServiceLifecycleTestKit

/// Runs `service` around `body` — its ``DispatchService/run()`` is what starts the dispatches it admits — and shuts
/// it down gracefully after (drained, what is left cancelled), whether `body` returned or threw.
package func withRunning<T: Sendable>(_ service: DispatchService, _ body: () async throws -> T) async throws -> T {
    try await testGracefulShutdown { trigger in
        try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
            group.addTask { try await service.run() }
            do {
                let value = try await body()
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
                return value
            } catch {
                trigger.triggerGracefulShutdown()
                try? await group.waitForAll()
                throw error
            }
        }
    }
}
