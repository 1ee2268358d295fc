/// The lifecycle of a dispatch. `completed`, `failed` and `cancelled` are terminal and final.
public enum DispatchStatus: String, Codable, Sendable, CaseIterable {
    case queued, running, completed, failed, cancelled

    /// Whether no later write may replace a result in this status.
    public var isTerminal: Bool {
        switch self {
        case .completed, .failed, .cancelled: true
        case .queued, .running: false
        }
    }

    /// The terminal statuses, for SQL filters.
    public static let terminal: [DispatchStatus] = [.completed, .failed, .cancelled]
}
