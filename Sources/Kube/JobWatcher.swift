import AgentProcess
import Foundation
import Logging
import Synchronization

/// Keeps the latest state of every Job we manage from one list-then-watch loop shared by all followers: list
/// (managed-by label), watch from the list's resourceVersion, resume from the last version seen when the server
/// ends the watch at its timeout, and list again and re-watch on a 410 or a stream that closed early. A change to a
/// followed Job wakes its follower at once; followers still poll now and then as a backstop, so a broken watch (or
/// none: nobody runs ``run()``) costs latency, never a result. ``run()`` is the backend's background work, in the
/// task group of the service that owns the backend (or beside a `dispatch run`); it watches only while someone
/// follows a Job.
final class JobWatcher: Sendable {
    struct State {
        var jobs: [String: KubeJob] = [:]
        /// Whether `jobs` reflects a completed list (until then a missing Job means nothing).
        var synced = false
        var followers: [UInt64: (job: String, wakeup: Wakeup)] = [:]
        var nextId: UInt64 = 0
        var lists = 0
        /// Whether a ``run()`` is going (one at a time: a second returns at once).
        var running = false
    }

    /// What the watch knows of one Job.
    enum Knowledge: Equatable {
        case unknown
        case exists(KubeJob)
        case gone
    }

    let client: KubeClient
    let selector: String
    let timeoutSeconds: Int
    let logger: Logger
    private let state = Mutex(State())
    /// Signalled when the first follower comes and when the last one leaves.
    private let demand = Wakeup()

    init(client: KubeClient, selector: String, timeoutSeconds: Int = 240, logger: Logger = Logger(label: "agent-dispatch.k8s.watch")) {
        self.client = client
        self.selector = selector
        self.timeoutSeconds = timeoutSeconds
        self.logger = logger
    }

    /// Starts waking `wakeup` on changes to `job`; the first follower starts the watch.
    func follow(_ job: String, wakeup: Wakeup) -> UInt64 {
        let (id, first) = state.withLock { state in
            state.nextId += 1
            state.followers[state.nextId] = (job, wakeup)
            return (state.nextId, state.followers.count == 1)
        }
        if first { demand.signal() }
        return id
    }

    /// Stops following; the last follower stops the watch (an idle runner holds no watch open).
    func unfollow(_ id: UInt64) {
        let last = state.withLock { state -> Bool in
            guard state.followers.removeValue(forKey: id) != nil, state.followers.isEmpty else { return false }
            Self.forget(&state)
            return true
        }
        if last { demand.signal() }
    }

    /// Watches while someone follows a Job, until cancelled: the first follower starts the list-then-watch loop,
    /// the last one to leave cancels it. One at a time: a second call (a `dispatch run` in-process beside a
    /// service) returns at once.
    func run() async {
        let first = state.withLock { state -> Bool in
            guard !state.running else { return false }
            state.running = true
            return true
        }
        guard first else { return }
        defer { state.withLock { $0.running = false } }
        while !Task.isCancelled {
            await waitForDemand(followed: true)
            guard !Task.isCancelled else { return }
            await withDiscardingTaskGroup { group in
                group.addTask { await self.watch() }
                await waitForDemand(followed: false)
                group.cancelAll()
            }
            // Updates of the cancelled loop may have landed after the last follower left.
            state.withLock { state in if state.followers.isEmpty { Self.forget(&state) } }
        }
    }

    /// Returns once someone follows a Job (`followed`) or nobody does, or when cancelled.
    private func waitForDemand(followed: Bool) async {
        while !Task.isCancelled {
            let seen = demand.generation
            if state.withLock({ !$0.followers.isEmpty }) == followed { return }
            await demand.wait(after: seen, timeout: .seconds(86_400))
        }
    }

    private static func forget(_ state: inout State) {
        state.synced = false
        state.jobs.removeAll()
    }

    func knowledge(of job: String) -> Knowledge {
        state.withLock { state in
            if let known = state.jobs[job] { return .exists(known) }
            return state.synced ? .gone : .unknown
        }
    }

    /// How many lists the loop has made (tests check that a 410 / closed stream led to a re-list).
    var lists: Int { state.withLock { $0.lists } }

    private func watch() async {
        var failures = 0
        var expired = 0
        while !Task.isCancelled {
            do {
                let list = try await client.jobs(labelSelector: selector)
                replace(list.items)
                var version = list.resourceVersion
                while !Task.isCancelled {
                    let opened = ContinuousClock.now
                    for try await event in client.watchJobs(labelSelector: selector, resourceVersion: version, timeoutSeconds: timeoutSeconds) {
                        apply(event)
                        version = event.resourceVersion ?? version
                    }
                    failures = 0
                    expired = 0
                    // A watch the server ended at its timeoutSeconds resumes from the last version seen; one that
                    // closed early (a proxy cut it, the API restarted) may have lost events: list again.
                    guard ContinuousClock.now - opened >= .seconds(timeoutSeconds) - .milliseconds(500) else { break }
                }
                logger.debug("job watch closed early; listing again", metadata: ["resourceVersion": "\(version ?? "")"])
            } catch let error as KubeError where error.status == 410 {
                // A fresh list's version should not expire at once; if it keeps doing so, back off like any failure.
                expired += 1
                logger.info("job watch expired (410); listing again", metadata: ["error": "\(error)"])
                if expired > 1 { try? await Task.sleep(for: .milliseconds(min(250 << min(expired - 1, 5), 5_000))) }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                logger.warning("job watch failed; followers poll meanwhile", metadata: ["error": "\(error)", "failures": "\(failures)"])
                try? await Task.sleep(for: .milliseconds(min(250 << min(failures, 5), 5_000)))
            }
        }
    }

    private func replace(_ jobs: [KubeJob]) {
        let wake = state.withLock { state -> [Wakeup] in
            let fresh = Dictionary(jobs.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
            let changed = Set(fresh.keys).union(state.jobs.keys).filter { fresh[$0] != state.jobs[$0] }
            state.jobs = fresh
            state.synced = true
            state.lists += 1
            return state.followers.values.filter { changed.contains($0.job) }.map(\.wakeup)
        }
        for wakeup in wake { wakeup.signal() }
    }

    private func apply(_ event: JobWatchEvent) {
        guard let job = event.job else { return }
        let wake = state.withLock { state -> [Wakeup] in
            if case .deleted = event { state.jobs.removeValue(forKey: job.name) } else { state.jobs[job.name] = job }
            return state.followers.values.filter { $0.job == job.name }.map(\.wakeup)
        }
        for wakeup in wake { wakeup.signal() }
    }
}

/// A level-triggered wake-up: `wait` returns when `signal` was called since the generation the caller last saw,
/// when the timeout passes, or when the waiting task is cancelled.
final class Wakeup: Sendable {
    private struct State {
        var generation = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        /// Waiters released (timeout, cancellation) before they were parked.
        var released: Set<UInt64> = []
        var nextId: UInt64 = 0
    }

    private let state = Mutex(State())

    init() {}

    var generation: Int { state.withLock { $0.generation } }

    func signal() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.generation += 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits for a generation other than `seen`, at most `timeout`; returns the generation now.
    @discardableResult
    func wait(after seen: Int, timeout: Duration) async -> Int {
        let id = state.withLock { state -> UInt64 in
            state.nextId += 1
            return state.nextId
        }
        // A timer on the process runtime's loop, not a sleeping task per wait.
        let runtime = ProcessRuntime.shared
        let timer = runtime.timer(at: .now + timeout) { [weak self] in self?.release(id) }
        defer {
            runtime.cancel(timer)
            state.withLock { _ = $0.released.remove(id) }
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let park = state.withLock { state -> Bool in
                    if state.generation != seen || state.released.remove(id) != nil { return false }
                    state.waiters[id] = continuation
                    return true
                }
                if !park { continuation.resume() }
            }
        } onCancel: {
            release(id)
        }
        return generation
    }

    private func release(_ id: UInt64) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let continuation = state.waiters.removeValue(forKey: id) else {
                state.released.insert(id)
                return nil
            }
            return continuation
        }
        continuation?.resume()
    }
}
