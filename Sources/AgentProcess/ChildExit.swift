import Foundation
import Synchronization

/// The exit of one process, heard by the ``ProcessRuntime`` through its pidfd (no thread of its own).
///
/// Waiting is on process exit, never on pipe EOF, so descendants holding stdout or stderr open cannot stall it.
final class ChildExit: Sendable {
    private struct Waiter {
        let continuation: CheckedContinuation<Int32?, Never>
        var timer: ProcessRuntime.Token?
    }

    private struct State {
        var status: Int32?
        var waiters: [UInt64: Waiter] = [:]
        var observers: [@Sendable () -> Void] = []
        var nextId: UInt64 = 0
    }

    private let state = Mutex(State())
    private let runtime: ProcessRuntime
    let pid: pid_t

    /// Reaps child `pid` when it exits.
    init(pid: pid_t, runtime: ProcessRuntime = .shared) {
        self.pid = pid
        self.runtime = runtime
        // A child nobody else reaps always has a status; `nil` (reaped elsewhere) is reported as killed.
        runtime.onExit(of: pid, reap: true) { [self] status in self.exited(status ?? SIGKILL) }
    }

    /// Watches `pid`, which is not our child (a monitor adopted from a previous runner): when it has exited (or is no
    /// longer the process that started at `startTime`), `status()` says how it ended.
    init(foreign pid: pid_t, startTime: UInt64, runtime: ProcessRuntime = .shared, status: @escaping @Sendable () -> Int32) {
        self.pid = pid
        self.runtime = runtime
        runtime.onExit(of: pid, reap: false, startTime: startTime) { [self] _ in self.exited(status()) }
    }

    /// The raw wait status once the child has been reaped.
    var status: Int32? { state.withLock { $0.status } }

    /// Calls `observer` (on the runtime's thread) once the process has exited; at once when it has.
    func whenExited(_ observer: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.status != nil { return true }
            state.observers.append(observer)
            return false
        }
        if now { observer() }
    }

    /// Waits for the exit; `nil` when `timeout` passes first or ``interrupt()`` is called.
    func wait(timeout: Duration?) async -> Int32? {
        if let status { return status }
        let id = state.withLock { state -> UInt64 in
            state.nextId += 1
            return state.nextId
        }
        return await withCheckedContinuation { continuation in
            // The waiter first, then its timer: a timer that fires at once must find it.
            let exited: Int32? = state.withLock { state in
                if let status = state.status { return status }
                state.waiters[id] = Waiter(continuation: continuation, timer: nil)
                return nil
            }
            if let exited { return continuation.resume(returning: exited) }
            guard let timeout else { return }
            let timer = runtime.timer(at: .now + timeout) { [self] in self.resume(id, with: nil) }
            let waiting = state.withLock { state -> Bool in
                guard state.waiters[id] != nil else { return false }
                state.waiters[id]?.timer = timer
                return true
            }
            if !waiting { runtime.cancel(timer) }
        }
    }

    /// Wakes every current waiter with `nil` (used on cancellation).
    func interrupt() {
        let waiters = state.withLock { state -> [Waiter] in
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters {
            if let timer = waiter.timer { runtime.cancel(timer) }
            waiter.continuation.resume(returning: nil)
        }
    }

    private func resume(_ id: UInt64, with value: Int32?) {
        guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
        if let timer = waiter.timer { runtime.cancel(timer) }
        waiter.continuation.resume(returning: value)
    }

    private func exited(_ status: Int32) {
        let (waiters, observers) = state.withLock { state -> ([Waiter], [@Sendable () -> Void]) in
            state.status = status
            defer {
                state.waiters.removeAll()
                state.observers.removeAll()
            }
            return (Array(state.waiters.values), state.observers)
        }
        for waiter in waiters {
            if let timer = waiter.timer { runtime.cancel(timer) }
            waiter.continuation.resume(returning: status)
        }
        for observer in observers { observer() }
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
