/// A Kubernetes API failure, decoded from the API's `Status` body when there is one.
package struct KubeError: Error, Sendable, CustomStringConvertible {
    /// HTTP status (0 when the server was not reached).
    package var status: Int
    /// The Status `reason` (`AlreadyExists`, `NotFound`, `Forbidden`, …).
    package var reason: String?
    /// What failed, on what, why.
    package var message: String

    package init(status: Int, reason: String? = nil, message: String) {
        self.status = status
        self.reason = reason
        self.message = message
    }

    package var description: String {
        "Kubernetes API \(status == 0 ? "unreachable" : "\(status)")\(reason.map { " \($0)" } ?? ""): \(message)"
    }

    /// Whether retrying may help (throttling, server errors, unreachable).
    var isRetryable: Bool { status == 0 || status == 429 || status >= 500 }
}
