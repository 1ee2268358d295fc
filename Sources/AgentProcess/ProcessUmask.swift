import CProcessSpawn
import Synchronization

/// The runner works with umask 077 (everything it writes is private); the processes it starts keep the
/// operator's umask, so files an agent creates look as they would without us (CONTRACT §6).
package enum ProcessUmask {
    private static let operatorMask = Atomic<Int32>(-1)

    /// Sets the runner's umask to 077 and remembers the one the operator started it with. Call once, first thing.
    package static func makeRunnerPrivate() {
        let previous = cps_set_umask(0o077)
        operatorMask.compareExchange(expected: -1, desired: previous, ordering: .relaxed)
    }

    /// The umask children get: the operator's, or `-1` (inherit) when ``makeRunnerPrivate()`` was not called.
    package static var forChildren: Int32 { operatorMask.load(ordering: .relaxed) }
}
