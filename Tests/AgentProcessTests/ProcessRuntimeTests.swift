import AgentProcess
import DispatchTestSupport
import Foundation
import Synchronization
import Testing

/// The one event loop every child of the runner is watched from (issue: scale).
@Suite(.serialized) struct ProcessRuntimeTests {
    let dir = TempDir("runtime")

    func spec(_ script: String, marker: String) -> ProcessSpec {
        ProcessSpec(
            executablePath: "/bin/sh",
            argv: ["sh", "-c", script],
            environment: ["PATH": "/usr/bin:/bin", "DISPATCH_REQUEST_ID": marker],
            workingDirectory: dir.path,
            stdoutPath: dir.child("\(marker).out"),
            stderrPath: dir.child("\(marker).err"),
            marker: "DISPATCH_REQUEST_ID=\(marker)"
        )
    }

    static func threads() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? ""
        return Int(line.split(separator: "\t").last?.trimmingCharacters(in: .whitespaces) ?? "") ?? 0
    }

    @Test func aHundredChildrenExitingAtOnceAreEachReportedWithoutAThreadApiece() async throws {
        let id = "many-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let before = Self.threads()
        let ended = try await withThrowingTaskGroup(of: (Int32?, Int).self) { group in
            for index in 0..<100 {
                let spec = spec("sleep 1; exit \(index % 7)", marker: "\(id)-\(index)")
                group.addTask {
                    let outcome = try await ProcessSupervisor().run(
                        spec,
                        limits: ProcessLimits(timeout: .seconds(30), maxLogBytes: 1_000_000)
                    )
                    return (outcome.exitCode, Self.threads())
                }
            }
            return try await group.reduce(into: [(Int32?, Int)]()) { $0.append($1) }
        }
        let codes = ended.map(\.0)
        let peak = ended.map(\.1).max() ?? 0
        #expect(codes.count == 100)
        #expect(codes.compactMap { $0 }.sorted() == (0..<100).map { Int32($0 % 7) }.sorted())
        // A reap thread and an output thread per child made this 200 more.
        #expect(peak < before + 20, "threads: \(before) before, \(peak) while 100 ran")
    }

    @Test func aChildThatForksAndExitsIsReportedAtItsExitAndItsChildIsSwept() async throws {
        let id = "fork-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = try await ProcessSupervisor().run(
            spec("(sleep 60; echo never) & exit 3", marker: id),
            limits: ProcessLimits(timeout: .seconds(30), killGrace: .milliseconds(200))
        )
        #expect(outcome.exitCode == 3)
        #expect(clock.now - start < .seconds(3))
        #expect(outcome.leftoversKilled >= 1)
        #expect(survivors(of: id).isEmpty)
    }

    @Test func aProcessThatIsNotOurChildIsHeardEndingThroughItsPidfd() async throws {
        let id = "foreign-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        // The grandchild outlives its parent: it is no child of this process, as an adopted monitor is not.
        _ = try await ProcessSupervisor().run(
            spec("sleep 1 & echo $! > \(dir.child("\(id).pid"))", marker: id),
            limits: ProcessLimits(timeout: .seconds(30)),
            sweepLeftovers: false
        )
        let pid = try #require(Int32(LogFile.read(dir.child("\(id).pid")).trimmingCharacters(in: .whitespacesAndNewlines)))
        let startTime = try #require(ProcessScanner.startTime(pid))
        let clock = ContinuousClock()
        let start = clock.now
        let heard = await withCheckedContinuation { continuation in
            ProcessRuntime.shared.onExit(of: pid, reap: false, startTime: startTime) { _ in continuation.resume(returning: clock.now) }
        }
        #expect(heard - start > .milliseconds(300), "heard before it ended")
        #expect(heard - start < .seconds(3))
        #expect(ProcessScanner.presence(pid, startTime: startTime) == .gone)
        // A start time that is not the process's: another process under that pid, gone for us at once.
        let mine = getpid()
        let other = await withCheckedContinuation { continuation in
            ProcessRuntime.shared.onExit(of: mine, reap: false, startTime: 1) { _ in continuation.resume(returning: true) }
        }
        #expect(other)
    }

    @Test func aWatchedFileReplacedByARenameIsStillWatched() async throws {
        let path = dir.child("watched.log")
        FileManager.default.createFile(atPath: path, contents: Data())
        let calls = Atomic<Int>(0)
        let token = ProcessRuntime.shared.watchFile(path) { calls.add(1, ordering: .relaxed) }
        defer { ProcessRuntime.shared.cancel(token) }
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data("one\n".utf8))
        try handle.close()
        #expect(await eventually(timeout: .seconds(5)) { calls.load(ordering: .relaxed) >= 1 })
        let replacement = dir.child("replacement.log")
        FileManager.default.createFile(atPath: replacement, contents: Data())
        #expect(rename(replacement, path) == 0)
        #expect(await eventually(timeout: .seconds(5)) { calls.load(ordering: .relaxed) >= 2 })
        let seen = calls.load(ordering: .relaxed)
        let replaced = try #require(FileHandle(forWritingAtPath: path))
        try replaced.write(contentsOf: Data("two\n".utf8))
        try replaced.close()
        #expect(await eventually(timeout: .seconds(5)) { calls.load(ordering: .relaxed) > seen }, "a write to the new file was heard")
        ProcessRuntime.shared.cancel(token)
        let after = calls.load(ordering: .relaxed)
        try Data("three\n".utf8).write(to: URL(fileURLWithPath: path))
        try await Task.sleep(for: .milliseconds(300))
        #expect(calls.load(ordering: .relaxed) == after, "a cancelled watch is not called")
    }

    @Test func aFileThatCannotBeWatchedIsLookedAtOnATimer() async throws {
        // A directory that is not there takes no inotify watch, as a machine out of watches takes none.
        let calls = Atomic<Int>(0)
        let token = ProcessRuntime.shared.watchFile(dir.child("missing/out.log")) { calls.add(1, ordering: .relaxed) }
        #expect(await eventually(timeout: .seconds(5)) { calls.load(ordering: .relaxed) >= 5 })
        ProcessRuntime.shared.cancel(token)
        try await Task.sleep(for: .milliseconds(100))
        let after = calls.load(ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(200))
        #expect(calls.load(ordering: .relaxed) == after, "no more looks once cancelled")
    }

    @Test func aFloodIsStoppedNearTheLimitByTheWatchItself() async throws {
        let id = "flood-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let outcome = try await ProcessSupervisor().run(
            spec("exec head -c 4000000000 /dev/zero", marker: id),
            limits: ProcessLimits(timeout: .seconds(60), maxLogBytes: 10_000_000)
        )
        #expect(outcome.ending == .outputLimit)
        #expect(outcome.exceededStream == "stdout")
        let size = (try? FileManager.default.attributesOfItem(atPath: dir.child("\(id).out"))[.size] as? Int) ?? 0
        #expect(size < 60_000_000, "stopped within a few MB of the limit: \(size)")
    }

    @Test func timersFireInOrderAndACancelledOneNever() async throws {
        let fired = Mutex<[Int]>([])
        let runtime = ProcessRuntime.shared
        _ = runtime.timer(at: .now + .milliseconds(120)) { fired.withLock { $0.append(2) } }
        _ = runtime.timer(at: .now + .milliseconds(40)) { fired.withLock { $0.append(1) } }
        let cancelled = runtime.timer(at: .now + .milliseconds(80)) { fired.withLock { $0.append(99) } }
        runtime.cancel(cancelled)
        await runtime.sleep(for: .milliseconds(250))
        #expect(fired.withLock { $0 } == [1, 2])
    }

    @Test func aZeroKillGraceStillKillsAnAgentThatIgnoresSigterm() async throws {
        // The grace's timer fires at once: it must find its waiter (it once fired first, and the wait never ended).
        let id = "zero-grace-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = try await ProcessSupervisor().run(
            spec("trap '' TERM; sleep 60", marker: id),
            limits: ProcessLimits(timeout: .milliseconds(300), killGrace: .zero)
        )
        #expect(outcome.ending == .timedOut)
        #expect(clock.now - start < .seconds(10))
    }

    @Test func aJobSubmittedWhileTheOnlyIdleThreadIsBeingWokenGetsAThreadOfItsOwn() async throws {
        let pool = BlockingPool(limit: 2)
        // One thread, idle after its first job.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in pool.submit { continuation.resume() } }
        try await Task.sleep(for: .milliseconds(50))
        let second = DispatchSemaphore(value: 0)
        let ran = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            // The first waits for the second: queued behind it on one thread, neither would ever finish.
            pool.submit { continuation.resume(returning: second.wait(timeout: .now() + 5) == .success) }
            pool.submit { second.signal() }
        }
        #expect(ran)
        #expect(pool.threadCount == 2)
    }

    @Test func theTimerHeapGivesTimersInDueOrder() {
        let base = ContinuousClock.now
        let offsets = (0..<500).map { _ in Int.random(in: 0..<10_000) }
        var heap = TimerHeap()
        for (id, offset) in offsets.enumerated() { heap.push(base + .milliseconds(offset), UInt64(id)) }
        var popped: [ContinuousClock.Instant] = []
        while let top = heap.top {
            popped.append(top.at)
            heap.pop()
        }
        #expect(popped.count == 500)
        #expect(popped == popped.sorted())
    }

    @Test func allPidsListsEveryProcessOnce() {
        let pids = ProcessScanner.allPids()
        #expect(pids.contains(getpid()))
        #expect(pids.contains(1))
        #expect(Set(pids).count == pids.count)
        let listed = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        #expect(Set(listed).subtracting(pids).count < 5, "processes come and go, but not many between two listings")
    }

    @Test func blockingWorkRunsOnABoundedPoolInOrder() async throws {
        let pool = BlockingPool(limit: 3)
        let done = Collected()
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<30 {
                group.addTask {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        pool.submit {
                            usleep(10_000)
                            done.items.withLock { $0.append(index) }
                            continuation.resume()
                        }
                    }
                }
            }
        }
        #expect(done.items.withLock { $0.count } == 30)
        #expect(pool.threadCount == 3, "30 jobs, never more than 3 threads: \(pool.threadCount)")
    }

    @Test func waitingForExitsEndsWhenTheyAllExitedOrAtTheLimit() async throws {
        let id = "exits-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        _ = try await ProcessSupervisor().run(
            spec("sleep 0.3 & echo $! > \(dir.child("\(id).a")); sleep 30 & echo $! > \(dir.child("\(id).b"))", marker: id),
            limits: ProcessLimits(timeout: .seconds(10)),
            sweepLeftovers: false
        )
        let quick = try #require(Int32(LogFile.read(dir.child("\(id).a")).trimmingCharacters(in: .whitespacesAndNewlines)))
        let slow = try #require(Int32(LogFile.read(dir.child("\(id).b")).trimmingCharacters(in: .whitespacesAndNewlines)))
        let clock = ContinuousClock()
        var start = clock.now
        #expect(await ProcessRuntime.shared.exits(of: [quick], within: .seconds(5)))
        #expect(clock.now - start < .seconds(2))
        start = clock.now
        #expect(await ProcessRuntime.shared.exits(of: [slow], within: .milliseconds(300)) == false)
        #expect(clock.now - start >= .milliseconds(290))
    }
}

final class Collected: Sendable {
    let items = Mutex<[Int]>([])
}
