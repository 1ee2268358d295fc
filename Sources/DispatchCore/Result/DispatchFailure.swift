import Foundation

/// Why a dispatch (or one step of it) did not complete, as a value: code decides on the case, people read
/// ``description``, the contract's sentence. Every "timed out after …" sentence is rendered here.
package enum DispatchFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// A budget ran out.
    case timedOut(Timeout)
    /// An agent printed more than the log limit on one stream and was killed.
    case outputLimit(tool: String, stream: String, limitBytes: Int64, during: String)
    /// A process exited non-zero; `stderrTail` is its last lines (may be empty).
    case exited(tool: String, code: Int32, stderrTail: String, during: String)
    /// A process was killed by a signal nobody in the runner sent.
    case signaled(tool: String, signal: Int32, during: String)
    /// The run passed its memory limit and the kernel killed a process of it.
    case outOfMemory(tool: String, limitBytes: Int64, during: String)
    /// Cancelled, with the canceller's reason.
    case cancelled(reason: String)
    /// The runner that owned the dispatch is gone; `reason` says which and how.
    case runnerLost(reason: String)
    /// The sandbox's checkout could not be made.
    case checkoutFailed(reason: String)
    /// Anything else, already in words.
    case message(String)

    /// A budget that ran out: who ran out of it, how far in, and at which point.
    package struct Timeout: Sendable, Equatable {
        /// What timed out: `codex`, `verification`, `checkout`, `artifact export`, `k8s Job agent-…`.
        package var subject: String
        /// Time spent when it was given up on (or the attempt's own allowance), in milliseconds.
        package var elapsedMs: Int
        /// The dispatch's whole budget, in milliseconds.
        package var budgetMs: Int
        /// Where in the dispatch.
        package var moment: Moment
        /// Appended as is (e.g. `"; Job deleted"`, `": <command>"`, `"; previous attempt: …"`).
        package var detail: String

        /// A timeout of `subject` at `moment`.
        package init(subject: String, elapsedMs: Int, budgetMs: Int, moment: Moment, detail: String = "") {
            self.subject = subject
            self.elapsedMs = elapsedMs
            self.budgetMs = budgetMs
            self.moment = moment
            self.detail = detail
        }
    }

    /// Where in a dispatch a budget ran out.
    package enum Moment: Sendable, Equatable {
        /// While `step` ran (`agent attempt 2/3`, `checkout`, `artifacts`).
        case during(String)
        /// Before `step` could start at all.
        case before(String)
        /// Too little was left (`remainingMs`) to start `step`.
        case notEnoughLeft(remainingMs: Int, toStart: String)
    }

    /// Whether a budget ran out (counted by `dispatch_timeouts_total`).
    package var isTimeout: Bool {
        if case .timedOut = self { return true }
        return false
    }

    /// The sentence the result's `error` carries.
    package var description: String {
        switch self {
        case .timedOut(let timeout):
            let moment: String
            switch timeout.moment {
            case .during(let step): moment = " during \(step)"
            case .before(let step): moment = " before \(step) could start"
            case .notEnoughLeft(let remainingMs, let step): moment = ": only \(remainingMs)ms left, not enough to start \(step)"
            }
            return "\(timeout.subject) timed out after \(timeout.elapsedMs)ms (budget \(timeout.budgetMs)ms)\(moment)\(timeout.detail)"
        case .outputLimit(let tool, let stream, let limitBytes, let during):
            return "\(tool) \(stream) exceeded the log limit of \(limitBytes) bytes during \(during)"
        case .exited(let tool, let code, let stderrTail, let during):
            return "\(tool) failed during \(during): exit \(code)" + (stderrTail.isEmpty ? "" : ": \(stderrTail)")
        case .signaled(let tool, let signal, let during):
            return "\(tool) was killed by signal \(signal) (\(Self.signalName(signal))) during \(during)"
        case .outOfMemory(let tool, let limitBytes, let during):
            return "\(tool) ran out of memory (the run's limit is \(limitBytes) bytes) and was killed during \(during)"
        case .cancelled(let reason), .runnerLost(let reason), .message(let reason):
            return reason
        case .checkoutFailed(let reason):
            return "checkout failed: \(reason)"
        }
    }

    /// Names of the signals an agent is usually ended by.
    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGBUS: "SIGBUS"
        case SIGHUP: "SIGHUP"
        case SIGPIPE: "SIGPIPE"
        default: "signal \(signal)"
        }
    }

    /// A step with its own limit (a libgit2 call, an API read) that ran past it: "`<step>` timed out after Nms".
    package static func stepTimedOut(_ step: String, afterMs: Int64) -> String {
        "\(step) timed out after \(afterMs)ms"
    }

    /// "waited …s for …" when a reader gives up (not a dispatch failure: the dispatch goes on).
    package static func waitTimedOut(seconds: Double, requestId: String, status: String) -> String {
        "timed out after \(seconds)s waiting for \(requestId) (still \(status))"
    }
}
