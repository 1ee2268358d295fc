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

    /// `--on-shutdown handoff` in process: `run()` returns within a moment, the agent is left running (nothing ended,
    /// nothing swept) and its row stays `running` for the next `serve`; a cancel-mode shutdown ends the same run.
    @Test(arguments: [DispatchService.ShutdownMode.handoff, .cancel])
    func aShutdownHandsOffOrEndsWhatRuns(_ mode: DispatchService.ShutdownMode) async throws {
        let fixture = try EngineFixture(killGraceMs: 300)
        let service = DispatchService(
            engine: fixture.engine,
            maxConcurrent: 2,
            logger: Logger(label: "t"),
            drainOnShutdown: .milliseconds(100),
            onShutdown: mode
        )
        let hung = fixture.request(.codex, "fake:hang", timeout: 120)
        defer { killSurvivors(of: hung.requestId) }
        let clock = ContinuousClock()
        var stopping = clock.now
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                _ = try await service.submit(hung)
                #expect(await eventually { !survivors(of: hung.requestId).isEmpty }, "the agent started")
                stopping = clock.now
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(clock.now - stopping < .seconds(4), "run() returned within a moment: \(clock.now - stopping)")
        let row = try #require(try await fixture.engine.store.record(hung.requestId))
        if mode == .handoff {
            #expect(row.status == .running, "left for the next serve: \(row.result.error ?? "")")
            #expect(!survivors(of: hung.requestId).isEmpty, "the agent runs on")
        } else {
            #expect(row.status == .cancelled && row.result.error == "runner shutting down", "\(row.result.error ?? "")")
            #expect(survivors(of: hung.requestId).isEmpty)
        }
    }

    /// A hand-off's detach that came before the run's disk watch was made still reaches the agent phase under it.
    @Test func aDetachBeforeTheDiskWatchIsPassedOn() throws {
        let dir = TempDir("disk-watch-detach")
        let outer = CancelToken()
        outer.detach()
        let watch = try #require(RunDiskWatch(places: [dir.path], limitBytes: 1 << 30, outer: outer))
        #expect(watch.token.isDetached && watch.token.letGo.isSet)
        let cancelled = CancelToken()
        cancelled.cancel(reason: "stop")
        #expect(RunDiskWatch(places: [dir.path], limitBytes: 1 << 30, outer: cancelled)?.token.reason == "stop")
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

/// The owner a queued request is started under is the one whose leases the service renews (rows are compared
/// exactly): otherwise a queued-then-started run's lease lapses and any reader ends it as abandoned.
@Suite(.serialized) struct DispatchServiceOwnerTests {
    @Test func aQueuedRequestStartsUnderTheOwnerWhoseLeasesAreRenewed() async throws {
        // With monitors (as `serve` under bwrap has them), the owner carries more than the process.
        let monitor = URL(fileURLWithPath: TestPaths.dispatchBinary).deletingLastPathComponent().appendingPathComponent("dispatch-monitor").path
        let fixture = try EngineFixture(environment: ["DISPATCH_MONITOR_BIN": monitor])
        #expect(fixture.engine.runsOutliveRunner || EngineFixture.isolation.mode == .none)
        let service = DispatchService(engine: fixture.engine, maxConcurrent: 1, logger: Logger(label: "t"))
        let first = fixture.request(.codex, "fake:sleep=0.5 fake:answer=first")
        let second = fixture.request(.codex, "fake:sleep=3 fake:answer=second")
        try await withRunning(service) { try await queuedStartsUnderTheRenewedOwner(fixture, service, first, second) }
    }

    func queuedStartsUnderTheRenewedOwner(
        _ fixture: EngineFixture,
        _ service: DispatchService,
        _ first: DispatchRequest,
        _ second: DispatchRequest
    ) async throws {
        _ = try await service.submit(first)
        #expect(try await service.submit(second).status == .queued)
        var started = try #require(try await fixture.engine.store.record(second.requestId))
        for _ in 0..<200 where started.status == .queued {
            try await Task.sleep(for: .milliseconds(20))
            started = try #require(try await fixture.engine.store.record(second.requestId))
        }
        #expect(started.status == .running)
        #expect(started.owner == fixture.engine.serveOwner, "\(String(describing: started.owner))")
        #expect(try await fixture.engine.store.renewLeases(of: fixture.engine.serveOwner) >= 1, "its lease is renewed")
        _ = try await fixture.engine.awaitTerminal(second.requestId, timeout: .seconds(20))
    }
}
