import AgentProcess
import DispatchTestSupport
import Foundation
import Synchronization
import Testing

@Suite(.serialized) struct ProcessSupervisorTests {
    let dir = TempDir("supervisor")

    func spec(_ script: String, marker: String, stdin: String? = nil) -> ProcessSpec {
        ProcessSpec(
            executablePath: "/bin/sh",
            argv: ["sh", "-c", script],
            environment: ["PATH": "/usr/bin:/bin", "DISPATCH_REQUEST_ID": marker],
            workingDirectory: dir.path,
            stdinPath: stdin,
            stdoutPath: dir.child("\(marker).out"),
            stderrPath: dir.child("\(marker).err"),
            marker: "DISPATCH_REQUEST_ID=\(marker)"
        )
    }

    @Test func exitIsReportedPromptlyWhileAnOrphanHoldsStderr() async throws {
        let id = "orphan-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = try await ProcessSupervisor().run(
            spec("sleep 60 & echo 'parent line' >&2; exit 7", marker: id),
            limits: ProcessLimits(timeout: .seconds(30))
        )
        let elapsed = clock.now - start
        #expect(outcome.ending == .exited)
        #expect(outcome.exitCode == 7)
        #expect(elapsed < .seconds(5), "supervision waited on the orphan: \(elapsed)")
        #expect(outcome.leftoversKilled >= 1)
        #expect(LogFile.read(dir.child("\(id).err")) == "parent line\n")
        #expect(survivors(of: id).isEmpty)
    }

    /// A hand-off: the supervision is let go of — it returns at once, the process and its group left running, nothing
    /// swept — and a cancellation that follows does not end it either.
    @Test func aLetGoSupervisionReturnsAtOnceAndLeavesTheProcessRunning() async throws {
        let id = "let-go-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        var limits = ProcessLimits(timeout: .seconds(30), killGrace: .milliseconds(100))
        let letGo = Latch()
        limits.letGo = letGo
        let clock = ContinuousClock()
        let supervised = Task { try await ProcessSupervisor().run(spec("sleep 30 & sleep 30", marker: id), limits: limits) }
        // sh, its background sleep and its foreground sleep.
        #expect(await eventually { survivors(of: id).count == 3 }, "all started")
        let start = clock.now
        letGo.set()
        supervised.cancel()
        let outcome = try await supervised.value
        #expect(outcome.ending == .letGo)
        #expect(outcome.exitCode == nil && outcome.leftoversKilled == 0)
        #expect(clock.now - start < .seconds(1), "at once: \(clock.now - start)")
        try await Task.sleep(for: .milliseconds(300))
        #expect(survivors(of: id).count == 3, "the process and its children run on")
    }

    @Test func aLatchTellsEveryObserverOnceAndThoseThatComeLateAtOnce() async {
        let latch = Latch()
        let told = Mutex(0)
        let key = latch.observe { told.withLock { $0 += 1 } }
        let ignored = latch.observe { told.withLock { $0 += 100 } }
        latch.ignore(ignored)
        #expect(!latch.isSet && told.withLock { $0 } == 0)
        latch.set()
        latch.set()
        #expect(latch.isSet && told.withLock { $0 } == 1, "once, and not the ignored one")
        latch.observe { told.withLock { $0 += 10 } }
        #expect(told.withLock { $0 } == 11, "an observer after the set is called at once")
        latch.ignore(key)
        await latch.wait()
    }

    @Test func escapedAndStubbornDescendantsAreGone() async throws {
        let id = "escape-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let script = """
            setsid sh -c 'trap "" TERM; sleep 120' &
            sh -c 'trap "" TERM; sleep 120' &
            sleep 0.3
            exit 0
            """
        let outcome = try await ProcessSupervisor().run(
            spec(script, marker: id),
            limits: ProcessLimits(timeout: .seconds(30), killGrace: .seconds(1))
        )
        #expect(outcome.exitCode == 0)
        #expect(outcome.leftoversKilled >= 2)
        #expect(survivors(of: id).isEmpty)
    }

    @Test func timeoutKillsTheWholeGroupWithinTheGrace() async throws {
        let id = "timeout-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = try await ProcessSupervisor().run(
            spec("trap '' TERM; sleep 100 & sleep 100 & wait", marker: id),
            limits: ProcessLimits(timeout: .milliseconds(500), killGrace: .milliseconds(500))
        )
        let elapsed = clock.now - start
        #expect(outcome.ending == .timedOut)
        #expect(outcome.signal == SIGKILL)
        #expect(elapsed < .seconds(4), "took \(elapsed)")
        #expect(survivors(of: id).isEmpty)
    }

    @Test func cancellationTerminatesTheGroup() async throws {
        let id = "cancel-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let supervisor = ProcessSupervisor()
        let spec = spec("sleep 100", marker: id)
        let task = Task { try await supervisor.run(spec, limits: ProcessLimits(timeout: .seconds(60))) }
        #expect(await eventually { !survivors(of: id).isEmpty })
        task.cancel()
        let outcome = try await task.value
        #expect(outcome.ending == .cancelled)
        #expect(outcome.signal == SIGTERM)
        #expect(survivors(of: id).isEmpty)
    }

    @Test func finalEventEndsAProcessThatNeverExits() async throws {
        let id = "final-\(UUID().uuidString)"
        defer { killSurvivors(of: id) }
        let out = dir.child("\(id).out")
        let outcome = try await ProcessSupervisor().run(
            spec("echo DONE; sleep 100", marker: id),
            limits: ProcessLimits(timeout: .seconds(60), completionGrace: .milliseconds(300)),
            finalEventSeen: { LogFile.read(out).contains("DONE") }
        )
        #expect(outcome.ending == .completedByOutput)
        #expect(outcome.duration < .seconds(5))
        #expect(survivors(of: id).isEmpty)
    }

    @Test func stdinComesFromAFileAndOutputGoesToFiles() async throws {
        let id = "stdin-\(UUID().uuidString)"
        let input = dir.child("input.txt")
        let big = String(repeating: "y", count: 300_000)
        try big.write(toFile: input, atomically: true, encoding: .utf8)
        let outcome = try await ProcessSupervisor().run(
            spec("wc -c", marker: id, stdin: input),
            limits: ProcessLimits(timeout: .seconds(10))
        )
        #expect(outcome.exitCode == 0)
        #expect(LogFile.read(dir.child("\(id).out")).trimmingCharacters(in: .whitespacesAndNewlines) == "300000")
        let noStdin = try await ProcessSupervisor().run(spec("cat; echo end", marker: id), limits: ProcessLimits(timeout: .seconds(10)))
        #expect(noStdin.exitCode == 0, "stdin must be /dev/null, never an open pipe")
    }

    @Test func spawnFailuresAreClearErrors() async {
        var bad = spec("true", marker: "bad")
        bad.workingDirectory = dir.child("does-not-exist")
        await #expect(throws: AgentProcessError.self) {
            _ = try await ProcessSupervisor().run(bad, limits: ProcessLimits(timeout: .seconds(5)))
        }
        #expect(ExecutableLocator.locate("definitely-not-a-program-xyz", searchPath: "/usr/bin:/bin") == nil)
        #expect(ExecutableLocator.locate("sh", searchPath: "/usr/bin:/bin") != nil)
    }

    @Test func tailKeepsTheLastBytes() throws {
        let path = dir.child("big.log")
        try (String(repeating: "a", count: 20_000) + String(repeating: "b", count: 10_000)).write(toFile: path, atomically: true, encoding: .utf8)
        let tail = LogFile.tail(path, maxBytes: 10_000)
        #expect(tail.utf8.count == 10_000)
        #expect(tail.allSatisfy { $0 == "b" })
    }
}

@Suite struct LogFileTests {
    @Test func aTailIsBoundedWhileAWriterKeepsAppending() async throws {
        let dir = TempDir("log-tail")
        let path = dir.child("growing.log")
        FileManager.default.createFile(atPath: path, contents: nil)
        // A fast writer with a bounded total, so the test costs a fraction of a second and 1 GB at most.
        let writer = try CommandRunner.start("/bin/sh", ["-c", "exec head -c 1000000000 /dev/zero > \"$0\"", path])
        defer {
            writer.terminate()
            _ = writer.wait()
        }
        func size() -> Int {
            var info = stat()
            return stat(path, &info) == 0 ? Int(info.st_size) : 0
        }
        #expect(await eventually { size() > 1_000_000 })
        var largest = 0
        while size() < 900_000_000, writer.isRunning {
            largest = max(largest, LogFile.tail(path, maxBytes: 1000).utf8.count)
        }
        #expect(largest <= 1000, "a tail of at most 1000 bytes, not whatever the writer added meanwhile (\(largest))")
    }
}
