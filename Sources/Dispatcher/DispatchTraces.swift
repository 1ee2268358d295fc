import DispatchCore
import Execution
import Synchronization
import Tracing

/// One trace per dispatch (CONTRACT §11): a `dispatch` span from admission to the terminal result — a child of the
/// caller's `traceparent` when the request carries one — with `admission` and `queue` spans under it; the backends'
/// spans (checkout or warm claim, each agent attempt, verification, export, the k8s Job) are started in the root's
/// context, which the engine binds while a backend runs. Without a tracer (no `OTEL_EXPORTER_OTLP_ENDPOINT`) every span
/// is the no-op tracer's: nothing is kept or sent.
package final class DispatchTraces: Sendable {
    private struct Open {
        var root: any Span
        var queue: (any Span)?
        var opened: ContinuousClock.Instant
    }

    private let open = Mutex<[String: Open]>([:])

    package init() {}

    /// Most traces open at once in this process: a queued request a replica of a shared queue ran is never ended here;
    /// past the bound the oldest open ones are ended as `not followed here`.
    static let maxOpen = 4096

    /// Whether the dispatch's trace is open in this process.
    func isOpen(_ requestId: String) -> Bool { open.withLock { $0[requestId] != nil } }

    /// The context of the caller's `traceparent` (nothing without one, or without a tracer).
    static func callerContext(_ request: DispatchRequest) -> ServiceContext {
        var context = ServiceContext.topLevel
        if let traceparent = request.traceparent {
            InstrumentationSystem.instrument.extract(["traceparent": traceparent], into: &context, using: HeaderExtractor())
        }
        return context
    }

    /// The dispatch's root span, started now unless it is open in this process (a duplicate submission, a run adopted
    /// from a runner that died keeps its trace id through the caller's context but has a root of its own).
    @discardableResult
    func root(_ request: DispatchRequest) -> any Span {
        open.withLock { open in
            if let known = open[request.requestId] { return known.root }
            let span = startSpan("dispatch", context: Self.callerContext(request), ofKind: .server)
            span.attributes["dispatch.request_id"] = request.requestId
            span.attributes["dispatch.tool"] = request.tool.rawValue
            span.attributes["dispatch.mode"] = request.executionMode.rawValue
            if let model = request.model { span.attributes["dispatch.model"] = model }
            if open.count >= Self.maxOpen, let oldest = open.min(by: { $0.value.opened < $1.value.opened }) {
                open[oldest.key] = nil
                oldest.value.queue?.end()
                oldest.value.root.attributes["dispatch.status"] = "not followed here"
                oldest.value.root.end()
            }
            open[request.requestId] = Open(root: span, opened: ContinuousClock.now)
            return span
        }
    }

    /// The context a dispatch's spans descend from.
    func context(_ request: DispatchRequest) -> ServiceContext { root(request).context }

    /// Starts the span of the wait in the queue.
    func queued(_ request: DispatchRequest) {
        let context = context(request)
        let span = startSpan("queue", context: context)
        open.withLock { $0[request.requestId]?.queue = span }
    }

    /// Ends the wait in the queue (the dispatch starts).
    func started(_ requestId: String) {
        let queue = open.withLock { open -> (any Span)? in
            defer { open[requestId]?.queue = nil }
            return open[requestId]?.queue
        }
        queue?.end()
    }

    /// Ends the dispatch's trace with what it came to; `outcome` overrides the status's words (`handed off`).
    func ended(_ result: DispatchResult, outcome: String? = nil) {
        guard let entry = open.withLock({ $0.removeValue(forKey: result.requestId) }) else { return }
        entry.queue?.end()
        entry.root.attributes["dispatch.status"] = outcome ?? result.status.rawValue
        if let usage = result.usage { DispatchUsageAttributes.describe(usage, on: entry.root) }
        if result.status == .failed || result.status == .cancelled {
            entry.root.setStatus(SpanStatus(code: .error, message: String((result.error ?? result.status.rawValue).prefix(500))))
        }
        entry.root.end()
    }

    /// Ends the trace of a request that was not admitted (refused, or a duplicate of one another process runs).
    func abandoned(_ requestId: String, why: String) {
        guard let entry = open.withLock({ $0.removeValue(forKey: requestId) }) else { return }
        entry.root.attributes["dispatch.status"] = why
        entry.root.end()
    }

}

/// Reads a header from a dictionary (the `traceparent` of a request).
struct HeaderExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}
