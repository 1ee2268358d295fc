import DispatchCore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// `DispatchService` and `LeaseKeeper` as services: what a graceful shutdown does to them.
@Suite(.serialized) struct DispatchServiceShutdownTests {
    @Test func gracefulShutdownStopsAcceptingDrainsThenCancelsWhatIsLeft() async throws {
        let fixture = try EngineFixture(killGraceMs: 500)
        let service = DispatchService(engine: fixture.engine, maxConcurrent: 2, logger: Logger(label: "t"), drainOnShutdown: .milliseconds(300))
        let quick = fixture.request(.codex, "fake:answer=quick")
        let slow = fixture.request(.codex, "fake:hang", timeout: 60)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                _ = try await service.submit(quick)
                _ = try await service.submit(slow)
                #expect(try await fixture.engine.awaitTerminal(quick.requestId, timeout: .seconds(20))?.status == .completed)
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        let ended = try #require(try await fixture.engine.store.record(slow.requestId))
        #expect(ended.status == .cancelled && ended.result.error == "runner shutting down", "\(ended.result.error ?? "")")
        await #expect(throws: DispatchService.Refused.self) { _ = try await service.submit(fixture.request(.codex, "late")) }
    }

    @Test func leaseKeeperEndsOnGracefulShutdown() async throws {
        let fixture = try EngineFixture()
        let service = DispatchService(engine: fixture.engine, maxConcurrent: 1, logger: Logger(label: "t"))
        let clock = ContinuousClock()
        let start = clock.now
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await LeaseKeeper(service: service, logger: Logger(label: "t")).run() }
                try await Task.sleep(for: .milliseconds(100))
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(clock.now - start < .seconds(10), "ended with the shutdown, not after a lease period")
    }
}
