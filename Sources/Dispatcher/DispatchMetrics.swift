import DispatchCore
import Foundation
import Synchronization

/// Counters, gauges and a duration histogram, rendered in Prometheus text format for `GET /metrics`.
public final class DispatchMetrics: Sendable {
    /// Histogram bucket bounds for dispatch duration, in seconds.
    static let durationBuckets: [Double] = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]

    private struct State {
        var finished: [String: Int] = [:]  // "tool|status"
        var dedupes = 0
        var timeouts = 0
        var processKills = 0
        var durationCounts = [Int](repeating: 0, count: DispatchMetrics.durationBuckets.count)
        var durationSum = 0.0
        var durationCount = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Records a terminal result; `failure` is the typed reason this process decided (a timeout is counted by
    /// its case, never by matching the sentence).
    public func finished(_ result: DispatchResult, failure: DispatchFailure?) {
        state.withLock { state in
            state.finished["\(result.tool.rawValue)|\(result.status.rawValue)", default: 0] += 1
            if failure?.isTimeout == true { state.timeouts += 1 }
            if let ms = result.durationMs {
                let seconds = Double(ms) / 1000
                state.durationSum += seconds
                state.durationCount += 1
                for (index, bound) in Self.durationBuckets.enumerated() where seconds <= bound { state.durationCounts[index] += 1 }
            }
        }
    }

    /// Records a duplicate submission that started nothing.
    public func deduplicated() { state.withLock { $0.dedupes += 1 } }

    /// Records processes the runner had to kill (timeouts, cancels, leftovers, abandoned runs).
    public func killed(_ count: Int) {
        guard count > 0 else { return }
        state.withLock { $0.processKills += count }
    }

    /// The Prometheus text exposition, with the live gauges supplied by the caller.
    public func render(running: Int, queued: Int, waiters: Int) -> String {
        let snapshot = state.withLock { $0 }
        var out = """
            # HELP dispatch_dispatches_total Dispatches that reached a terminal status.
            # TYPE dispatch_dispatches_total counter

            """
        for key in snapshot.finished.keys.sorted() {
            let parts = key.split(separator: "|")
            out += "dispatch_dispatches_total{tool=\"\(parts[0])\",status=\"\(parts[1])\"} \(snapshot.finished[key]!)\n"
        }
        out += """
            # HELP dispatch_duration_seconds Duration of terminal dispatches.
            # TYPE dispatch_duration_seconds histogram

            """
        for (index, bound) in Self.durationBuckets.enumerated() {
            out += "dispatch_duration_seconds_bucket{le=\"\(bound)\"} \(snapshot.durationCounts[index])\n"
        }
        out += "dispatch_duration_seconds_bucket{le=\"+Inf\"} \(snapshot.durationCount)\n"
        out += "dispatch_duration_seconds_sum \(snapshot.durationSum)\n"
        out += "dispatch_duration_seconds_count \(snapshot.durationCount)\n"
        out += Self.single("dispatch_dedupe_total", "counter", "Submissions of an already known requestId.", snapshot.dedupes)
        out += Self.single("dispatch_timeouts_total", "counter", "Dispatches that ended because a budget ran out.", snapshot.timeouts)
        out += Self.single("dispatch_process_kills_total", "counter", "Agent processes killed by the runner.", snapshot.processKills)
        out += Self.single("dispatch_running", "gauge", "Dispatches executing now.", running)
        out += Self.single("dispatch_queued", "gauge", "Dispatches waiting for a slot.", queued)
        out += Self.single("dispatch_await_waiters", "gauge", "Long-poll waiters.", waiters)
        return out
    }

    private static func single(_ name: String, _ type: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
    }
}
