import DispatchCore
import Foundation

/// `POST /internal/agent-dispatch`: accepted (202) or a duplicate (200, with the known result).
struct SubmitResponse: Encodable, Sendable {
    var ok = true
    var requestId: String
    var status: DispatchStatus
    var duplicate: Bool
    var result: DispatchResult?
}

/// A request's result (`GET /internal/agent-result/{id}`, await, cancel).
struct ResultResponse: Encodable, Sendable {
    var ok = true
    var requestId: String
    var status: DispatchStatus
    var result: DispatchResult

    init(_ result: DispatchResult) {
        requestId = result.requestId
        status = result.status
        self.result = result
    }
}

/// A refusal that names the request's state (409): already terminal, or a callback for a request no Job runs.
struct ConflictResponse: Encodable, Sendable {
    var ok = false
    var requestId: String
    var status: DispatchStatus
    var error: String
    var ignored: Bool?
    var result: DispatchResult?
}

/// `POST /internal/agent-result`: whether the report changed the request.
struct CallbackResponse: Encodable, Sendable {
    var ok = true
    var requestId: String
    var status: DispatchStatus
    var ignored: Bool
}

/// `GET /internal/agent-await/{id}` when the request is still not terminal (504).
struct AwaitTimeoutResponse: Encodable, Sendable {
    var ok = false
    var requestId: String
    var status = "timeout"
    var currentStatus: DispatchStatus
    var timeoutMs: Int
}

/// `GET /readyz`.
struct ReadyResponse: Encodable, Sendable {
    var ok: Bool
    var store: Bool
    var inbox: Bool
    /// Terminal results the store has not taken yet (a full disk); not ready while any is held.
    var held: Int
}

/// `GET /`: what this runner is.
struct InfoResponse: Encodable, Sendable {
    var name = "agent-dispatch"
    var version: String
    var gitSha: String
    var uptimeSeconds: Int
    var startedAt: String
    var backends = ["local", "k8s"]
    var defaultBackend: SandboxBackend
    /// How agents are contained: `bwrap` or `none` (CONTRACT §7).
    var isolation: String
    /// What controls agents' network: `proxy` (the egress proxy, under isolation) or `none` (CONTRACT §10).
    var egress: String
    /// How each run's memory and process count are limited: `cgroup-v1`, `rlimit` or `none` (CONTRACT §7).
    var limits: String
    /// Who local agents run as (CONTRACT §7): `leased` (a root runner: sandboxed agents on leased uids, host-mode
    /// agents as their work dir's owner), `root-unsafe` (the same, but root for root-owned work dirs) or `runner`.
    var agentUser: String
    /// Who runs agents in each mode: `sandbox` (`leased`, `runner`) and `host` (`workdir-owner`, `root-unsafe`,
    /// `runner`).
    var agentUsers: [String: String]
    /// Whether local runs outlive this `serve` (held by monitors, adopted by the next one).
    var runsOutliveRunner: Bool
    /// Where dispatches are recorded: `sqlite` (CONTRACT §8 adds `postgres`).
    var store: String
    var maxConcurrent: Int
    var running: Int
    var queued: Int
    var counts: [String: Int]
}
