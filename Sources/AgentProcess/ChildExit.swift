import Foundation
import Synchronization

/// The exit of one child, observed by a dedicated thread blocked in `waitpid`.
///
/// Waiting is on process exit, never on pipe EOF, so descendants holding stdout or stderr open cannot stall it.
final class ChildExit: Sendable {
    private struct Waiter {
        let continuation: CheckedContinuation<Int32?, Never>
        let timer: Task<Void, Never>?
    }

    private struct State {
        var status: Int32?
        var waiters: [UInt64: Waiter] = [:]
        var nextId: UInt64 = 0
    }

    private let state = Mutex(State())
    let pid: pid_t

    /// Starts reaping `pid` on its own thread.
    convenience init(pid: pid_t) {
        self.init(pid: pid) {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && Glibc.errno == EINTR {}
            return status
        }
    }

    /// Watches `pid` on its own thread, which blocks in `waitForExit` until the process has ended and returns its
    /// wait status (a monitor adopted from a previous runner is not our child: it is watched through a pidfd).
    init(pid: pid_t, waitForExit: @escaping @Sendable () -> Int32) {
        self.pid = pid
        let thread = Thread { [self] in
            self.exited(waitForExit())
        }
        thread.name = "reap-\(pid)"
        thread.stackSize = 64 * 1024
        thread.start()
    }

    /// The raw wait status once the child has been reaped.
    var status: Int32? { state.withLock { $0.status } }

    /// Waits for the exit; `nil` when `timeout` passes first or ``interrupt()`` is called.
    func wait(timeout: Duration?) async -> Int32? {
        if let status { return status }
        let id = state.withLock { state -> UInt64 in
            state.nextId += 1
            return state.nextId
        }
        return await withCheckedContinuation { continuation in
            let timer: Task<Void, Never>? = timeout.map { timeout in
                Task { [self] in
                    try? await Task.sleep(for: timeout)
                    guard !Task.isCancelled else { return }
                    self.resume(id, with: nil)
                }
            }
            let resumeNow: Int32?? = state.withLock { state in
                if let status = state.status { return .some(status) }
                state.waiters[id] = Waiter(continuation: continuation, timer: timer)
                return .none
            }
            if case .some(let status) = resumeNow {
                timer?.cancel()
                continuation.resume(returning: status)
            }
        }
    }

    /// Wakes every current waiter with `nil` (used on cancellation).
    func interrupt() {
        let waiters = state.withLock { state -> [Waiter] in
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: nil)
        }
    }

    private func resume(_ id: UInt64, with value: Int32?) {
        guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(returning: value)
    }

    private func exited(_ status: Int32) {
        let waiters = state.withLock { state -> [Waiter] in
            state.status = status
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: status)
        }
    }
}

/// Decoding of `waitpid` status words (the C macros are not imported into Swift).
enum WaitStatus {
    static func exitCode(_ status: Int32) -> Int32? { (status & 0x7f) == 0 ? (status >> 8) & 0xff : nil }
    static func signal(_ status: Int32) -> Int32? {
        let sig = status & 0x7f
        return sig != 0 && sig != 0x7f ? sig : nil
    }
}
