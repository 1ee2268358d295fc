import DispatchCore
import Prometheus

/// Counters, gauges and a duration histogram for `GET /metrics`, kept in a swift-prometheus registry.
///
/// Each instance owns its own `PrometheusCollectorRegistry` and creates its collectors directly on it, never
/// through the global swift-metrics `MetricsSystem`:
/// - `MetricsSystem.bootstrap` may run only once per process, while tests create many engines in one process;
/// - two engines in one process must not share collectors: one registry hands the same
///   `dispatch_dispatches_total{tool,status}` counter to every caller with that name and labels, so with a shared
///   (global) registry each engine would report the other's dispatches.
///
/// Metrics that other code records through the global swift-metrics API (Hummingbird's `MetricsMiddleware`) live in
/// a separate, process-wide registry, which the server appends to ``render(running:queued:waiters:)``'s text.
/// Names here all start with `dispatch_`, so the two never emit the same family.
package final class DispatchMetrics: Sendable {
    /// Histogram bucket bounds for dispatch duration, in seconds.
    static let durationBuckets: [Double] = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]

    private let registry = PrometheusCollectorRegistry()
    private let duration: ValueHistogram
    private let dedupes: Counter
    private let timeouts: Counter
    private let processKills: Counter
    private let sandboxRefusals: Counter
    private let runningGauge: Gauge
    private let queuedGauge: Gauge
    private let waitersGauge: Gauge

    package init() {
        duration = registry.makeValueHistogram(
            descriptor: Self.name("duration", "seconds", "Duration of terminal dispatches."),
            buckets: Self.durationBuckets
        )
        dedupes = registry.makeCounter(descriptor: Self.name("dedupe", "total", "Submissions of an already known requestId."))
        timeouts = registry.makeCounter(descriptor: Self.name("timeouts", "total", "Dispatches that ended because a budget ran out."))
        processKills = registry.makeCounter(descriptor: Self.name("process_kills", "total", "Agent processes killed by the runner."))
        sandboxRefusals = registry.makeCounter(
            descriptor: Self.name("agent_sandbox_refusals", "total", "Commands an agent CLI's own sandbox refused (a silent no-op risk).")
        )
        runningGauge = registry.makeGauge(descriptor: Self.name("running", "", "Dispatches executing now."))
        queuedGauge = registry.makeGauge(descriptor: Self.name("queued", "", "Dispatches waiting for a slot."))
        waitersGauge = registry.makeGauge(descriptor: Self.name("await_waiters", "", "Long-poll waiters."))
    }

    /// Records a terminal result; `failure` is the typed reason this process decided (a timeout is counted by
    /// its case, never by matching the sentence).
    package func finished(_ result: DispatchResult, failure: DispatchFailure?) {
        // The registry returns the existing counter for a known (tool, status); label order is the rendered order.
        let labels = [("tool", result.tool.rawValue), ("status", result.status.rawValue)]
        registry.makeCounter(descriptor: Self.dispatchesName, labels: labels).increment()
        if failure?.isTimeout == true { timeouts.increment() }
        if let ms = result.durationMs { duration.record(Double(ms) / 1000) }
        // Counted as the run's report is recorded (the proxy counts per run; the report is bounded, its total is not).
        if let denied = result.network?.deniedConnections, denied > 0 {
            registry.makeCounter(descriptor: Self.egressDeniedName, labels: [("tool", result.tool.rawValue)]).increment(by: Int64(denied))
        }
        recordUsage(result)
        let refusals = result.attempts.flatMap { $0.warnings ?? [] }.filter { $0.hasPrefix(AttemptRecord.sandboxWarningPrefix) }.count
        if refusals > 0 { sandboxRefusals.increment(by: Int64(refusals)) }
    }

    /// Adds each attempt's tokens (by kind) and cost (CONTRACT §11) under its tool and model (`default` for the CLI's own).
    private func recordUsage(_ result: DispatchResult) {
        // A k8s run brings back its sum only, without attempts: counted under the request's model.
        let attempts = result.attempts.contains { $0.usage != nil } ? result.attempts.map { ($0.model, $0.usage) } : [(result.model, result.usage)]
        for (model, usage) in attempts {
            guard let usage else { continue }
            let model = model ?? "default"
            for (kind, count) in usage.tokensByKind where count > 0 {
                let labels = [("tool", result.tool.rawValue), ("model", model), ("kind", kind)]
                registry.makeCounter(descriptor: Self.tokensName, labels: labels).increment(by: Int64(count))
            }
            if let cost = usage.costUsd, cost > 0 {
                registry.makeCounter(descriptor: Self.costName, labels: [("tool", result.tool.rawValue), ("model", model)]).increment(by: cost)
            }
        }
    }

    /// Records a duplicate submission that started nothing.
    package func deduplicated() { dedupes.increment() }

    /// Records processes the runner had to kill (timeouts, cancels, leftovers, abandoned runs).
    package func killed(_ count: Int) {
        guard count > 0 else { return }
        processKills.increment(by: Int64(count))
    }

    /// The Prometheus text exposition, with the live gauges supplied by the caller.
    ///
    /// Families come in the registry's (unspecified) order; counters render as integers (`1`), gauges as
    /// doubles (`2.0`), histogram bounds as `le="0.1"`, `le="1.0"` … `le="+Inf"`.
    package func render(running: Int, queued: Int, waiters: Int) -> String {
        runningGauge.set(to: Double(running))
        queuedGauge.set(to: Double(queued))
        waitersGauge.set(to: Double(waiters))
        return registry.emitToString()
    }

    /// `dispatch_dispatches_total`, labelled `tool` and `status`.
    private static var dispatchesName: MetricNameDescriptor {
        name("dispatches", "total", "Dispatches that reached a terminal status.")
    }

    /// `dispatch_tokens_total`, labelled `tool`, `model` and `kind` (`input`, `cached_input`, `output`, `reasoning`).
    private static var tokensName: MetricNameDescriptor {
        name("tokens", "total", "Tokens the agent CLIs reported, by kind (cached input is part of input, reasoning of output).")
    }

    /// `dispatch_cost_usd_total`, labelled `tool` and `model`.
    private static var costName: MetricNameDescriptor {
        name("cost_usd", "total", "US dollars the agent CLIs reported their attempts cost.")
    }

    /// `dispatch_egress_denied_total`, labelled `tool`.
    private static var egressDeniedName: MetricNameDescriptor {
        name("egress_denied", "total", "Connections of agents that the egress policy refused (CONTRACT §10).")
    }

    /// `dispatch_<metric>_<unit>` (no `_<unit>` when `unit` is empty), with its `# HELP` text.
    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "dispatch", metricName: metric, unitName: unit, helpText: help)
    }
}
