import Metrics
import Prometheus
import Synchronization

/// The process-wide Prometheus registry behind the global swift-metrics API, and its one-time bootstrap.
///
/// Hummingbird's `MetricsMiddleware` creates its `Counter`, `Timer` and `Meter` through the global `MetricsSystem`,
/// which can be bootstrapped once per process (a second `MetricsSystem.bootstrap` traps). So nothing bootstraps it
/// implicitly: the server calls ``bootstrapOnce()`` when it starts (`DispatchApplication.run`), and further calls,
/// from more servers in the same process, do nothing. If something else bootstrapped `MetricsSystem` first (a test
/// with its own factory), that factory is kept and ``processRegistry`` stays empty.
///
/// Dispatch metrics are not here: each `DispatchMetrics` keeps its own registry, so engines stay apart. The HTTP
/// request metrics are per process: two servers in one process count into the same `hb_requests` series.
package enum ServerMetrics {
    /// Receives every metric created through the global swift-metrics API once ``bootstrapOnce()`` took effect.
    package static let processRegistry = PrometheusCollectorRegistry()

    /// `nil` until the first ``bootstrapOnce()``; then whether it pointed `MetricsSystem` at ``processRegistry``.
    private static let bootstrapped = Mutex<Bool?>(nil)

    /// Bootstraps `MetricsSystem` with a `PrometheusMetricsFactory` on ``processRegistry``, at most once per process.
    ///
    /// - Returns: Whether global swift-metrics land in ``processRegistry`` (false if another factory was there first).
    @discardableResult
    package static func bootstrapOnce() -> Bool {
        bootstrapped.withLock { state in
            if let state { return state }
            let free = MetricsSystem.factory is NOOPMetricsHandler
            if free { MetricsSystem.bootstrap(factory()) }
            state = free
            return free
        }
    }

    /// The process-wide metrics in Prometheus text format (empty before ``bootstrapOnce()`` or if it did not apply).
    package static func render() -> String {
        processRegistry.emitToString()
    }

    /// The factory on ``processRegistry``. Request durations get buckets up to 300 s beyond the default 10 s,
    /// since a long poll (`agent-await`) waits 30 s by default.
    static func factory() -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: processRegistry)
        factory.durationHistogramBuckets["http.server.request.duration"] =
            factory.defaultDurationHistogramBuckets + [.seconds(30), .seconds(60), .seconds(300)]
        return factory
    }
}
