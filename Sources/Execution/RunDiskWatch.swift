import AgentProcess
import DispatchCore
import Foundation
import Synchronization

/// The per-run disk limit (`DISPATCH_MAX_RUN_DISK_BYTES`, CONTRACT §7), enforced by watching: while the agent runs,
/// what its run's places (checkout, logs, home) take on disk is summed again and again, and a run over the limit is
/// stopped and fails `disk limit`. A watched limit, not a quota: between two looks an agent can write more (at most
/// what the disk takes in one interval); the state dir's filesystem filling up is what ``HeldResults`` survives.
///
/// A walk of the places (`lstat` only: no link followed, no file opened, no other filesystem entered) costs what
/// the number of files costs, never their size; the next look waits ten times as long as the last walk took, at
/// least ``minimumInterval``, and a look walks only when the places' filesystems grew by more than the run's headroom
/// since the last walk, or ``fullWalkEvery`` passed.
package final class RunDiskWatch: Sendable {
    /// What is summed.
    let places: [String]
    /// The most the places may take, in bytes.
    let limitBytes: Int64
    /// The uid the run's agent runs as (its own, when the runner is root): files its processes hold open after
    /// unlinking them count too — they take the disk as much as any other.
    let uid: UInt32?
    /// What the agent phase runs under: cancelled when the run's own token is, or when the limit is passed.
    package let token = CancelToken()
    private let outer: CancelToken
    private let observer: Mutex<UInt64?> = Mutex(nil)
    private let exceeded: Mutex<Int64?> = Mutex(nil)
    private let looks = Mutex(Looks())

    /// The next look and what the last walk found.
    private struct Looks {
        var timer: ProcessRuntime.Token?
        var stopped = false
        var last: (at: ContinuousClock.Instant, used: Int64, filesystems: Int64)?
    }

    /// Shortest time between two looks.
    static let minimumInterval: Duration = .seconds(2)

    /// A watch over `places` under `outer` (the run's own cancellation, passed on); `nil` when there is no limit.
    package init?(places: [String], limitBytes: Int64?, uid: UInt32? = nil, outer: CancelToken) {
        guard let limitBytes, limitBytes > 0, !places.isEmpty else { return nil }
        self.places = places
        self.limitBytes = limitBytes
        self.uid = uid
        self.outer = outer
        let inner = token
        let passOn: @Sendable () -> Void = {
            if let reason = outer.reason { inner.cancel(reason: reason) }
            if outer.isDetached { inner.detach() }
            if outer.isSettled { inner.settle() }
        }
        let key = outer.observe(passOn)
        observer.withLock { $0 = key }
        // What happened before the observer was registered (a hand-off's detach included) is passed on too.
        passOn()
    }

    /// Looks until `body` returns, then stops; a run past the limit has its agent stopped through the watch's token
    /// (``CancelToken/stopped``: its processes are ended as on any cancellation) and its outcome fails `disk limit`.
    /// `nil` from `body` (nothing to adopt) stays. `body` runs in the calling task; the looks are timers on the
    /// process runtime whose walks run on the blocking pool, so a held run has no task of its own for its watch.
    package func watching(_ body: @escaping @Sendable () async -> AgentPhase.Outcome?) async -> AgentPhase.Outcome? {
        schedule(at: .now)
        var outcome = await body()
        looks.withLock { looks in
            looks.stopped = true
            if let timer = looks.timer { ProcessRuntime.shared.cancel(timer) }
        }
        if let key = observer.withLock({ $0 }) { outer.removeObserver(key) }
        if let used = exceeded.withLock({ $0 }), outer.reason == nil, outcome != nil {
            outcome?.status = .failed
            outcome?.failure = .message(Self.sentence(used: used, limit: limitBytes))
        }
        return outcome
    }

    /// The failure's words.
    static func sentence(used: Int64, limit: Int64) -> String {
        "disk limit: the run's checkout, logs and home took \(used) bytes, over DISPATCH_MAX_RUN_DISK_BYTES=\(limit); the agent was stopped"
    }

    /// Sets the next look for `instant`, unless the watch stopped.
    private func schedule(at instant: ContinuousClock.Instant) {
        looks.withLock { looks in
            guard !looks.stopped else { return }
            looks.timer = ProcessRuntime.shared.timer(at: instant) { [self] in BlockingPool.shared.submit { self.look() } }
        }
    }

    /// One look (on the blocking pool), then the next is set: ten times as long as the walk took, at least
    /// ``minimumInterval``. A look skips the walk while the run cannot have passed the limit: what it took at the last
    /// walk plus what its filesystems took since (their used blocks, `statvfs`: one call, not a walk) is within the
    /// limit — any growth of the run's places, unlinked-open files on those filesystems included, is growth of those.
    /// A full walk still comes every ``fullWalkEvery``: space freed elsewhere on the filesystem could hide growth
    /// meanwhile, and unlinked-open files on another filesystem (a tmpfs) are counted only by a walk. Holding 200 idle
    /// runs, the walks were most of what `serve` still did. A run past the limit has the watch's token cancelled.
    private func look() {
        let clock = ContinuousClock()
        let start = clock.now
        guard let last = looks.withLock({ $0.stopped ? nil : Optional($0.last) }) else { return }
        let filesystems = Self.filesystemsUsed(places)
        let unchanged = last.map { last in
            start - last.at < Self.fullWalkEvery && last.used + max(0, filesystems - last.filesystems) <= limitBytes
        }
        var took = Duration.zero
        if unchanged != true {
            let used = places.reduce(Int64(0)) { $0 + Self.bytesOnDisk($1) } + (uid.map(Self.unlinkedOpenBytes) ?? 0)
            if used > limitBytes {
                exceeded.withLock { $0 = used }
                token.cancel(reason: Self.sentence(used: used, limit: limitBytes))
                return
            }
            looks.withLock { $0.last = (start, used, filesystems) }
            took = clock.now - start
        }
        schedule(at: clock.now + max(Self.minimumInterval, took * 10))
    }

    /// Longest time between two walks of a run's places.
    static let fullWalkEvery: Duration = .seconds(30)

    /// The bytes in use on the filesystems that hold `places` (each counted once).
    static func filesystemsUsed(_ places: [String]) -> Int64 {
        var seen = Set<UInt64>()
        var total = Int64(0)
        for place in places {
            var info = stat()
            var fs = statvfs()
            guard stat(place, &info) == 0, seen.insert(UInt64(info.st_dev)).inserted, statvfs(place, &fs) == 0 else { continue }
            total += (Int64(fs.f_blocks) - Int64(fs.f_bfree)) * Int64(fs.f_frsize)
        }
        return total
    }

    /// The blocks of files that processes of `uid` hold open after unlinking them, from the machine-wide scan every
    /// watch shares (``UnlinkedOpenFiles``): one pass over `/proc` per interval for all runs, not one per run.
    static func unlinkedOpenBytes(uid: UInt32) -> Int64 { UnlinkedOpenFiles.shared.bytes(of: uid) }

    /// The blocks everything under `path` takes (a sparse file only what it wrote), never following a link or leaving
    /// `path`'s filesystem.
    static func bytesOnDisk(_ path: String) -> Int64 {
        var root = stat()
        guard lstat(path, &root) == 0 else { return 0 }
        var total = Int64(root.st_blocks) * 512
        guard root.st_mode & S_IFMT == S_IFDIR, let walker = FileManager.default.enumerator(atPath: path) else { return total }
        while let relative = walker.nextObject() as? String {
            var info = stat()
            guard lstat("\(path)/\(relative)", &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFDIR, info.st_dev != root.st_dev {
                walker.skipDescendants()
                continue
            }
            total += Int64(info.st_blocks) * 512
        }
        return total
    }
}

/// Files that processes hold open after unlinking them, per uid, found through `/proc/<pid>/fd` in one pass for every
/// uid asked about at once. A pass is reused by every watch that asks within ``freshFor``: holding N runs costs one
/// scan of `/proc` per interval, not N (at 200 runs the per-run scans were two thirds of `serve`'s CPU).
final class UnlinkedOpenFiles: Sendable {
    static let shared = UnlinkedOpenFiles()

    /// How long one pass answers for.
    static let freshFor: Duration = .seconds(1)

    private struct State {
        var scannedAt: ContinuousClock.Instant?
        var bytes: [UInt32: Int64] = [:]
        /// The uids asked about and when last (a uid asked for the first time is scanned for at the next pass).
        var asked: [UInt32: ContinuousClock.Instant] = [:]
        /// A pass is under way: callers meanwhile take the last figures (the scan runs outside the lock).
        var scanning = false
    }

    private let state = Mutex(State())

    /// The bytes `uid`'s processes hold in unlinked files (0 for root: the runner's own uid is shared with everything).
    func bytes(of uid: UInt32) -> Int64 {
        guard uid != 0 else { return 0 }
        let now = ContinuousClock.now
        let due = state.withLock { state -> Set<UInt32>? in
            let new = state.asked[uid] == nil
            state.asked[uid] = now
            let stale = state.scannedAt.map { now - $0 >= Self.freshFor } ?? true
            guard stale || new, !state.scanning else { return nil }
            state.scanning = true
            // Only uids asked about lately are scanned for: a run that ended stops costing anything.
            state.asked = state.asked.filter { now - $0.value < .seconds(60) }
            return Set(state.asked.keys)
        }
        if let due {
            let bytes = Self.scan(due)
            state.withLock { state in
                (state.bytes, state.scannedAt, state.scanning) = (bytes, now, false)
            }
        }
        return state.withLock { $0.bytes[uid] ?? 0 }
    }

    /// One pass over `/proc`: for each uid of `uids`, the blocks of the unlinked regular files its processes hold
    /// open (each inode once).
    static func scan(_ uids: Set<UInt32>) -> [UInt32: Int64] {
        var seen = Set<String>()
        var totals = Dictionary(uniqueKeysWithValues: uids.map { ($0, Int64(0)) })
        for pid in ProcessScanner.allPids() {
            var owner = stat()
            guard stat("/proc/\(pid)", &owner) == 0, uids.contains(owner.st_uid),
                let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
            else { continue }
            for fd in fds {
                let link = "/proc/\(pid)/fd/\(fd)"
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link), target.hasSuffix(" (deleted)") else {
                    continue
                }
                var info = stat()
                guard stat(link, &info) == 0, info.st_mode & S_IFMT == S_IFREG, seen.insert("\(info.st_dev):\(info.st_ino)").inserted else {
                    continue
                }
                totals[owner.st_uid, default: 0] += Int64(info.st_blocks) * 512
            }
        }
        return totals
    }
}
