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
        let handler: @Sendable () -> Void
    }

    private struct State {
        var exits: [Int32: ExitWatch] = [:]
        var files: [UInt64: FileWatch] = [:]
        /// How many file watches share each inotify watch (one inode, one watch: directories are shared).
        var watchUsers: [Int32: Int] = [:]
        var timers: [UInt64: (at: ContinuousClock.Instant, handler: @Sendable () -> Void)] = [:]
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
        precondition(epoll >= 0 && inotify >= 0 && wake >= 0, "the process runtime cannot start: \(errnoText())")
        _ = cps_loop_add(epoll, inotify, Self.inotifyTag)
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
    package func onExit(of pid: pid_t, reap: Bool, startTime: UInt64 = 0, _ handler: @escaping @Sendable (Int32?) -> Void) {
        let pidfd = cps_pidfd_open(pid, reap ? 0 : startTime)
        if pidfd == -1, !reap {
            handler(nil)
            return
        }
        guard pidfd >= 0 else {
            // No pidfd (an old kernel, or out of descriptors): a thread of its own waits, as before the runtime.
            Self.waitOnThread(pid: pid, reap: reap, startTime: startTime, handler)
            return
        }
        state.withLock { $0.exits[pidfd] = ExitWatch(pid: pid, reap: reap, handler: handler) }
        if cps_loop_add(epoll, pidfd, UInt64(pidfd)) != 0 {
            _ = state.withLock { $0.exits.removeValue(forKey: pidfd) }
            close(pidfd)
            Self.waitOnThread(pid: pid, reap: reap, startTime: startTime, handler)
        }
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
                resumer.onResume { self.cancel(timer) }
                if pids.isEmpty { resumer.resume() }
                for pid in pids {
                    onExit(of: pid, reap: false) { _ in
                        let done = left.withLock { left -> Bool in
                            left -= 1
                            return left == 0
                        }
                        if done { resumer.resume() }
                    }
                }
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
        _ = timer(at: .now + Self.pollInterval) { [self] in
            guard let handler = state.withLock({ $0.files[id]?.handler }) else { return }
            handler()
            poll(id)
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
            return Token(id: id)
        }
        wakeLoop()
        return token
    }

    /// Cancels a timer or a file watch (a handler already running may still finish).
    package func cancel(_ token: Token) {
        state.withLock { state in
            state.timers[token.id] = nil
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
        guard let next = state.withLock({ $0.timers.values.map(\.at).min() }) else { return -1 }
        let left = next - .now
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: ms)
    }

    private func fireDueTimers() {
        let now = ContinuousClock.now
        let due = state.withLock { state -> [@Sendable () -> Void] in
            let ids = state.timers.filter { $0.value.at <= now }.map(\.key)
            return ids.compactMap { state.timers.removeValue(forKey: $0)?.handler }
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
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            var handlers: [@Sendable () -> Void] = []
            for id in state.files.keys {
                guard var watch = state.files[id] else { continue }
                let hit = everything || changed.contains(watch.fileWatch) || changed.contains(watch.directoryWatch)
                guard hit else { continue }
                rewatchIfReplaced(&watch, &state)
                state.files[id] = watch
                handlers.append(watch.handler)
            }
            return handlers
        }
        for handler in handlers { handler() }
    }

    /// Follows `watch.path` to the file now there when it was replaced (renamed over, removed and created again).
    private func rewatchIfReplaced(_ watch: inout FileWatch, _ state: inout State) {
        var info = stat()
        let now: ino_t = lstat(watch.path, &info) == 0 ? info.st_ino : 0
        guard now != watch.inode else { return }
        dropWatch(watch.fileWatch, &state)
        (watch.fileWatch, watch.inode) = addFileWatch(watch.path, &state)
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
