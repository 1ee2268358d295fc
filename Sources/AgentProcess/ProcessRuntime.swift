import CProcessSpawn
import Foundation
import Synchronization

/// The runner's one event loop for processes: a single thread in `epoll_wait` that hears every child's exit through
/// its pidfd (an adopted monitor's too, which is not our child), every growth of a watched output file through
/// inotify (woken by writes, idle while the agent is idle) and every deadline as a timer. Nothing else in the runner
/// waits on a process: no thread per child, no sleeping poll (issue: scale).
///
/// Handlers run on the loop thread, outside its lock: they must be short (a `stat`, a `kill`, resuming a
/// continuation) and never block.
package final class ProcessRuntime: Sendable {
    /// The runtime of this process, started on first use.
    package static let shared = ProcessRuntime()

    /// A registration that can be cancelled (a timer, a file watch).
    package struct Token: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    private struct ExitWatch {
        let id: UInt64
        let pid: pid_t
        let reap: Bool
        let handler: @Sendable (Int32?) -> Void
    }

    private struct FileWatch {
        let path: String
        let directory: String
        var inode: ino_t
        var fileWatch: Int32
        var directoryWatch: Int32
        /// Looked at on a timer (no watch could be had).
        var polled = false
        let handler: @Sendable () -> Void
    }

    private struct State {
        var exits: [Int32: ExitWatch] = [:]
        var files: [UInt64: FileWatch] = [:]
        /// How many file watches share each inotify watch (one inode, one watch: directories are shared).
        var watchUsers: [Int32: Int] = [:]
        var timers: [UInt64: (at: ContinuousClock.Instant, handler: @Sendable () -> Void)] = [:]
        /// The timers by due time; a cancelled timer's entry stays until it comes up (or the heap is rebuilt).
        var due = TimerHeap()
        var nextId: UInt64 = 0

        mutating func newId() -> UInt64 {
            nextId += 1
            return nextId
        }
    }

    private static let inotifyTag = UInt64.max
    private static let wakeTag = UInt64.max - 1
    private static let fileEvents = UInt32(IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF)
    private static let directoryEvents = UInt32(IN_MOVED_TO | IN_CREATE)

    private let epoll: Int32
    private let inotify: Int32
    private let wake: Int32
    private let state = Mutex(State())

    private init() {
        epoll = cps_loop_create()
        inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        wake = cps_wake_create()
        precondition(epoll >= 0 && wake >= 0, "the process runtime cannot start: \(errnoText())")
        // Without inotify (fs.inotify.max_user_instances reached) every watched file is looked at on a timer.
        if inotify >= 0 { _ = cps_loop_add(epoll, inotify, Self.inotifyTag) }
        _ = cps_loop_add(epoll, wake, Self.wakeTag)
        let thread = Thread { [self] in self.loop() }
        thread.name = "process-runtime"
        thread.stackSize = 256 * 1024
        thread.start()
    }

    // MARK: - Exits

    /// Calls `handler` once with `pid`'s wait status when it has exited: reaped here when `reap` (our child), else
    /// with `nil` (a foreign process: whoever recorded its end says how it ended). A foreign `pid` that is gone, or is
    /// no longer the process that started at `startTime` (field 22 of /proc/PID/stat, 0: not checked), counts as
    /// exited at once.
    /// Returns a handle for ``forget(_:)`` while the exit is watched through a pidfd.
    @discardableResult
    package func onExit(
        of pid: pid_t,
        reap: Bool,
        startTime: UInt64 = 0,
        _ handler: @escaping @Sendable (Int32?) -> Void
    ) -> ExitHandle? {
        let pidfd = cps_pidfd_open(pid, reap ? 0 : startTime)
        if pidfd == -1, !reap {
            handler(nil)
            return nil
        }
        guard pidfd >= 0 else {
            // No pidfd (an old kernel, or out of descriptors): a thread of its own waits, as before the runtime.
            Self.waitOnThread(pid: pid, reap: reap, startTime: startTime, handler)
            return nil
        }
        let id = state.withLock { state in
            let id = state.newId()
            state.exits[pidfd] = ExitWatch(id: id, pid: pid, reap: reap, handler: handler)
            return id
        }
        if cps_loop_add(epoll, pidfd, UInt64(pidfd)) != 0 {
            _ = state.withLock { $0.exits.removeValue(forKey: pidfd) }
            close(pidfd)
            Self.waitOnThread(pid: pid, reap: reap, startTime: startTime, handler)
            return nil
        }
        return ExitHandle(pidfd: pidfd, id: id)
    }

    /// Stops watching a foreign process's exit (its handler is not called); never for a child that must be reaped.
    package func forget(_ handle: ExitHandle) {
        // By id too: once that exit was handled, its descriptor number may name another watch.
        let removed = state.withLock { state -> Bool in
            guard let watch = state.exits[handle.pidfd], watch.id == handle.id, !watch.reap else { return false }
            state.exits[handle.pidfd] = nil
            return true
        }
        guard removed else { return }
        _ = cps_loop_remove(epoll, handle.pidfd)
        close(handle.pidfd)
    }

    /// One watched exit, for ``forget(_:)``.
    package struct ExitHandle: Sendable {
        fileprivate let pidfd: Int32
        fileprivate let id: UInt64
    }

    private static func waitOnThread(pid: pid_t, reap: Bool, startTime: UInt64, _ handler: @escaping @Sendable (Int32?) -> Void) {
        let thread = Thread {
            if reap {
                handler(reaped(pid, options: 0))
            } else {
                cps_wait_foreign_exit(pid, startTime)
                handler(nil)
            }
        }
        thread.name = "reap-\(pid)"
        thread.stackSize = 64 * 1024
        thread.start()
    }

    /// The wait status of child `pid` (`nil`: not ours to reap, or — with `WNOHANG` — still running).
    private static func reaped(_ pid: pid_t, options: Int32) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, options)
            if result == pid { return status }
            if result == -1 && errno == EINTR { continue }
            return nil
        }
    }

    /// Waits until every process of `pids` has exited, at most `timeout`; whether they all did. (A pid that is gone
    /// already counts as exited; one that is never heard of again costs a pidfd until it does exit.)
    package func exits(of pids: [pid_t], within timeout: Duration) async -> Bool {
        let left = Mutex(pids.count)
        let resumer = Resumer()
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                resumer.set(continuation)
                let timer = timer(at: .now + timeout) { resumer.resume() }
                let handles = pids.compactMap { pid in
                    onExit(of: pid, reap: false) { _ in
                        let done = left.withLock { left -> Bool in
                            left -= 1
                            return left == 0
                        }
                        if done { resumer.resume() }
                    }
                }
                // The pidfds of those that did not exit in time are let go with the wait.
                resumer.onResume {
                    self.cancel(timer)
                    for handle in handles { self.forget(handle) }
                }
                if pids.isEmpty { resumer.resume() }
            }
        } onCancel: {
            resumer.resume()
        }
        return left.withLock { $0 } <= 0
    }

    // MARK: - Output files

    /// Calls `handler` on every change to the file at `path` (written, truncated, replaced by a rename, removed),
    /// coalesced: many writes between two wakes of the loop are one call. Stop with ``cancel(_:)``.
    package func watchFile(_ path: String, _ handler: @escaping @Sendable () -> Void) -> Token {
        let directory = (path as NSString).deletingLastPathComponent
        let (token, polled) = state.withLock { state -> (Token, Bool) in
            let id = state.newId()
            var watch = FileWatch(path: path, directory: directory, inode: 0, fileWatch: -1, directoryWatch: -1, handler: handler)
            watch.directoryWatch = addWatch(directory, Self.directoryEvents, &state)
            (watch.fileWatch, watch.inode) = addFileWatch(path, &state)
            state.files[id] = watch
            return (Token(id: id), watch.directoryWatch < 0 || (watch.fileWatch < 0 && watch.inode != 0))
        }
        // No watch to be had (fs.inotify.max_user_watches reached, a directory that is not there): the file is
        // looked at on a timer instead, every 20 ms, so a log limit still holds.
        if polled { poll(token.id) }
        return token
    }

    /// Calls a watch's handler every ``pollInterval`` for as long as the watch is registered.
    private func poll(_ id: UInt64) {
        let first = state.withLock { state -> Bool in
            guard state.files[id]?.polled == false else { return false }
            state.files[id]?.polled = true
            return true
        }
        if first { pollAgain(id) }
    }

    private func pollAgain(_ id: UInt64) {
        _ = timer(at: .now + Self.pollInterval) { [self] in
            guard let handler = state.withLock({ $0.files[id]?.handler }) else { return }
            handler()
            pollAgain(id)
        }
    }

    /// How often a file that cannot be watched is looked at.
    static let pollInterval: Duration = .milliseconds(20)

    private func addWatch(_ path: String, _ events: UInt32, _ state: inout State) -> Int32 {
        let watch = inotify_add_watch(inotify, path, events)
        if watch >= 0 { state.watchUsers[watch, default: 0] += 1 }
        return watch
    }

    /// The watch on the regular file at `path` and its inode; (-1, 0) when there is none there, (-1, inode) when the
    /// watch could not be added.
    private func addFileWatch(_ path: String, _ state: inout State) -> (Int32, ino_t) {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return (-1, 0) }
        return (addWatch(path, Self.fileEvents | UInt32(IN_DONT_FOLLOW), &state), info.st_ino)
    }

    private func dropWatch(_ watch: Int32, _ state: inout State) {
        guard watch >= 0, let users = state.watchUsers[watch] else { return }
        if users > 1 {
            state.watchUsers[watch] = users - 1
        } else {
            state.watchUsers[watch] = nil
            inotify_rm_watch(inotify, watch)
        }
    }

    // MARK: - Timers

    /// Calls `handler` once at `instant` (at once when it has passed), unless cancelled first.
    package func timer(at instant: ContinuousClock.Instant, _ handler: @escaping @Sendable () -> Void) -> Token {
        let token = state.withLock { state in
            let id = state.newId()
            state.timers[id] = (instant, handler)
            state.due.push(instant, id)
            return Token(id: id)
        }
        wakeLoop()
        return token
    }

    /// Cancels a timer or a file watch (a handler already running may still finish).
    package func cancel(_ token: Token) {
        state.withLock { state in
            if state.timers.removeValue(forKey: token.id) != nil, state.due.count > 2 * state.timers.count + 64 {
                // Mostly cancelled entries (await windows of an hour, cancelled at once): rebuilt from the live ones.
                state.due = TimerHeap(state.timers.map { ($0.value.at, $0.key) })
            }
            if let watch = state.files.removeValue(forKey: token.id) {
                dropWatch(watch.fileWatch, &state)
                dropWatch(watch.directoryWatch, &state)
            }
        }
    }

    /// Waits until `duration` has passed (a timer on the loop; cancelling the task returns early).
    package func sleep(for duration: Duration) async {
        let resumer = Resumer()
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                resumer.set(continuation)
                let token = timer(at: .now + duration) { resumer.resume() }
                resumer.onResume { self.cancel(token) }
            }
        } onCancel: {
            resumer.resume()
        }
    }

    // MARK: - The loop

    private func wakeLoop() {
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
    }

    private func loop() {
        var tags = [UInt64](repeating: 0, count: 64)
        while true {
            let count = tags.withUnsafeMutableBufferPointer { cps_loop_wait(epoll, $0.baseAddress, 64, nextTimeoutMs()) }
            for tag in tags.prefix(max(0, Int(count))) {
                switch tag {
                case Self.wakeTag:
                    var value: UInt64 = 0
                    _ = read(wake, &value, 8)
                case Self.inotifyTag:
                    filesChanged()
                default:
                    exited(Int32(truncatingIfNeeded: tag))
                }
            }
            fireDueTimers()
        }
    }

    /// Milliseconds until the next timer (rounded up), -1 without one.
    private func nextTimeoutMs() -> Int32 {
        let next = state.withLock { state -> ContinuousClock.Instant? in
            while let top = state.due.top, state.timers[top.id]?.at != top.at { state.due.pop() }
            return state.due.top?.at
        }
        guard let next else { return -1 }
        let left = next - .now
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }

    private func fireDueTimers() {
        let now = ContinuousClock.now
        let due = state.withLock { state -> [@Sendable () -> Void] in
            var handlers: [@Sendable () -> Void] = []
            while let top = state.due.top, top.at <= now {
                state.due.pop()
                if state.timers[top.id]?.at == top.at, let timer = state.timers.removeValue(forKey: top.id) { handlers.append(timer.handler) }
            }
            return handlers
        }
        for handler in due { handler() }
    }

    private func exited(_ pidfd: Int32) {
        guard let watch = state.withLock({ $0.exits.removeValue(forKey: pidfd) }) else { return }
        _ = cps_loop_remove(epoll, pidfd)
        close(pidfd)
        watch.handler(watch.reap ? Self.reaped(watch.pid, options: WNOHANG) : nil)
    }

    private func filesChanged() {
        var watches = [Int32](repeating: 0, count: 256)
        let count = watches.withUnsafeMutableBufferPointer { cps_inotify_read(inotify, $0.baseAddress, 256) }
        let changed = Set(watches.prefix(Int(abs(count))))
        let everything = count < 0 || changed.contains(-1)
        let (handlers, unwatched) = state.withLock { state -> ([@Sendable () -> Void], [UInt64]) in
            var handlers: [@Sendable () -> Void] = []
            var unwatched: [UInt64] = []
            for id in state.files.keys {
                guard var watch = state.files[id] else { continue }
                let inDirectory = everything || changed.contains(watch.directoryWatch)
                guard inDirectory || changed.contains(watch.fileWatch) else { continue }
                // Something was created or renamed in its directory: watch what is at the path now (even under the
                // same inode number — a file removed and created again — whose old watch the kernel dropped).
                if inDirectory, !rewatch(&watch, &state) { unwatched.append(id) }
                state.files[id] = watch
                handlers.append(watch.handler)
            }
            return (handlers, unwatched)
        }
        // A file there whose watch could not be added (out of watches): looked at on a timer from now on.
        for id in unwatched { poll(id) }
        for handler in handlers { handler() }
    }

    /// Watches the file at `watch.path` anew (the new watch before the old is dropped: the same inode keeps its
    /// watch); false when a file is there but takes no watch.
    private func rewatch(_ watch: inout FileWatch, _ state: inout State) -> Bool {
        let old = watch.fileWatch
        (watch.fileWatch, watch.inode) = addFileWatch(watch.path, &state)
        dropWatch(old, &state)
        return watch.fileWatch >= 0 || watch.inode == 0
    }

}

/// A continuation resumed once, by whichever comes first; what must follow the resume runs after it.
final class Resumer: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, Never>?
        var resumed = false
        var after: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func set(_ continuation: CheckedContinuation<Void, Never>) {
        let resumeNow = state.withLock { state -> Bool in
            if state.resumed { return true }
            state.continuation = continuation
            return false
        }
        if resumeNow { continuation.resume() }
    }

    /// Runs `body` once the continuation has been resumed (at once if it has been).
    func onResume(_ body: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.resumed { return true }
            state.after = body
            return false
        }
        if runNow { body() }
    }

    func resume() {
        let (continuation, after) = state.withLock { state -> (CheckedContinuation<Void, Never>?, (@Sendable () -> Void)?) in
            guard !state.resumed else { return (nil, nil) }
            state.resumed = true
            defer { state.continuation = nil }
            return (state.continuation, state.after)
        }
        continuation?.resume()
        after?()
    }
}

/// Wakes one waiting task; a signal while nobody waits is kept for the next wait (signals do not count up).
/// Cancelling the waiting task wakes it.
package final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    package init() {}

    package func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Waits for a signal or until `deadline`, whichever comes first — the runner's one "race a deadline" (a
    /// timer on the ``ProcessRuntime``). A return does not say which: callers look again.
    package func wait(until deadline: ContinuousClock.Instant) async {
        let runtime = ProcessRuntime.shared
        let timer = runtime.timer(at: deadline) { [self] in signal() }
        await wait()
        runtime.cancel(timer)
    }

    package func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            signal()
        }
    }
}

/// A binary min-heap of (due time, timer id): the next timer in O(1), a push or pop in O(log n).
package struct TimerHeap {
    private var items: [(at: ContinuousClock.Instant, id: UInt64)] = []

    package init() {}

    package init(_ items: [(ContinuousClock.Instant, UInt64)]) {
        for (at, id) in items { push(at, id) }
    }

    package var count: Int { items.count }

    package var top: (at: ContinuousClock.Instant, id: UInt64)? { items.first }

    package mutating func push(_ at: ContinuousClock.Instant, _ id: UInt64) {
        items.append((at, id))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].at < items[parent].at else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    package mutating func pop() {
        guard !items.isEmpty else { return }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count, items[left].at < items[smallest].at { smallest = left }
            if right < items.count, items[right].at < items[smallest].at { smallest = right }
            guard smallest != parent else { return }
            items.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
