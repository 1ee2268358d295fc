/// The lifecycle of a dispatch. `completed`, `failed` and `cancelled` are terminal and final.
package enum DispatchStatus: String, Codable, Sendable, CaseIterable {
    case queued, running, completed, failed, cancelled

    /// Whether no later write may replace a result in this status.
    package var isTerminal: Bool {
        switch self {
        case .completed, .failed, .cancelled: true
        case .queued, .running: false
        }
    }

    /// The terminal statuses, for SQL filters.
    package static let terminal: [DispatchStatus] = [.completed, .failed, .cancelled]
}
