import DispatchCore
import DispatchStore
import Foundation

/// `GET /internal/agent-dispatches`: one page, newest first, and the cursor of the next (`null` on the last).
struct ListResponse: Encodable, Sendable {
    var items: [Item]
    var next: String?

    /// One request in a list. Absent values are `null`, not missing (CONTRACT §3's item fields are all present).
    struct Item: Encodable, Sendable {
        var requestId: String
        var status: DispatchStatus
        var tool: AgentTool
        var model: String?
        var executionMode: ExecutionMode
        var sandboxBackend: SandboxBackend?
        var startedAt: String?
        var updatedAt: String
        var completedAt: String?
        var durationMs: Int?
        var error: String?
        /// The dispatch's tokens and cost (CONTRACT §11), `null` when no CLI said anything of them.
        var usage: AgentUsage?

        init(_ record: DispatchRecord) {
            let result = record.result
            requestId = record.requestId
            status = record.status
            tool = record.request.tool
            model = result.model
            executionMode = record.request.executionMode
            sandboxBackend = result.sandboxBackend
            startedAt = result.startedAt
            updatedAt = result.updatedAt
            completedAt = result.completedAt
            durationMs = result.durationMs
            error = result.error
            usage = result.usage
        }

        enum CodingKeys: String, CodingKey {
            case requestId, status, tool, model, executionMode, sandboxBackend, startedAt, updatedAt, completedAt, durationMs, error, usage
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(requestId, forKey: .requestId)
            try container.encode(status, forKey: .status)
            try container.encode(tool, forKey: .tool)
            try container.encode(model, forKey: .model)
            try container.encode(executionMode, forKey: .executionMode)
            try container.encode(sandboxBackend, forKey: .sandboxBackend)
            try container.encode(startedAt, forKey: .startedAt)
            try container.encode(updatedAt, forKey: .updatedAt)
            try container.encode(completedAt, forKey: .completedAt)
            try container.encode(durationMs, forKey: .durationMs)
            try container.encode(error, forKey: .error)
            try container.encode(usage, forKey: .usage)
        }
    }

    enum CodingKeys: String, CodingKey { case ok, items, next }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(true, forKey: .ok)
        try container.encode(items, forKey: .items)
        try container.encode(next, forKey: .next)
    }
}
