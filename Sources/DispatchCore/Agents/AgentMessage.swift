/// A chat message in an agent's JSON events (claude's `assistant` event, pi's `message_end` / `agent_end`).
///
/// Every field is optional and one of the wrong type reads as missing; only a message that is not a JSON object
/// fails to decode.
struct AgentMessage: Decodable {
    /// `role`, e.g. `assistant`.
    var role: String?
    /// pi: `stopReason`, `error` when the model call failed.
    var stopReason: String?
    /// pi: `errorMessage`, why it failed.
    var errorMessage: String?
    /// `content`: a string, or an array of parts.
    var content: Content?
    /// pi: `usage` of an assistant message (one model call).
    var usage: PiUsage?
    /// claude: `id` of the API message (one model call; printed again with each of its content blocks).
    var id: String?
    /// claude: the same `usage`, in the Messages API's shape.
    var apiUsage: ClaudeEvent.Usage?

    private enum CodingKeys: String, CodingKey {
        case role, stopReason, errorMessage, content, usage, id
    }

    /// Reads each field leniently; fails only when the value is not an object.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        role = container.lenient(String.self, forKey: .role)
        stopReason = container.lenient(String.self, forKey: .stopReason)
        errorMessage = container.lenient(String.self, forKey: .errorMessage)
        content = container.lenient(Content.self, forKey: .content)
        usage = container.lenient(PiUsage.self, forKey: .usage)
        id = container.lenient(String.self, forKey: .id)
        apiUsage = container.lenient(ClaudeEvent.Usage.self, forKey: .usage)
    }

    /// The joined `text` parts of `content` (or `content` itself when it is a string).
    var text: String? { content?.text }
}

extension AgentMessage {
    /// A message `content`: a string, or an array of `{type, text}` parts (every element an object).
    enum Content: Decodable {
        /// `content` given as one string.
        case string(String)
        /// `content` given as an array of parts.
        case parts([Part])

        /// A string, or else an array whose every element is an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let string = try? container.decode(String.self) {
                self = .string(string)
            } else {
                self = .parts(try container.decode([Part].self))
            }
        }

        /// The string, or the `text` of the `type: text` parts joined; `nil` when there are none.
        var text: String? {
            switch self {
            case .string(let string):
                return string
            case .parts(let parts):
                let texts = parts.compactMap { $0.type == "text" ? $0.text : nil }
                return texts.isEmpty ? nil : texts.joined()
            }
        }
    }

    /// One element of a `content` array.
    struct Part: Decodable {
        /// `type`: `text`, `thinking`, `tool_use`, …
        var type: String?
        /// `text` of a `text` part.
        var text: String?

        private enum CodingKeys: String, CodingKey {
            case type, text
        }

        /// Reads each field leniently; fails only when the value is not an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            type = container.lenient(String.self, forKey: .type)
            text = container.lenient(String.self, forKey: .text)
        }
    }
}

/// pi's `usage` of one assistant message: `input` (uncached), `cacheRead`, `cacheWrite`, `output`, `cost.total` (USD).
struct PiUsage: Decodable {
    var input: Int?
    var cacheRead: Int?
    var cacheWrite: Int?
    var output: Int?
    var cost: Double?

    private enum CodingKeys: String, CodingKey {
        case input, cacheRead, cacheWrite, output, cost
    }

    private enum CostKeys: String, CodingKey {
        case total
    }

    /// Reads each field leniently; fails only when the value is not an object.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        input = container.lenient(Int.self, forKey: .input)
        cacheRead = container.lenient(Int.self, forKey: .cacheRead)
        cacheWrite = container.lenient(Int.self, forKey: .cacheWrite)
        output = container.lenient(Int.self, forKey: .output)
        cost = (try? container.nestedContainer(keyedBy: CostKeys.self, forKey: .cost))?.lenient(Double.self, forKey: .total)
    }

    /// Input counted as codex counts it: the cached tokens (read and written) included.
    var agentUsage: AgentUsage {
        let parts = [input, cacheRead, cacheWrite].compactMap(AgentUsage.tokens)
        return AgentUsage(inputTokens: parts.isEmpty ? nil : parts.reduce(0, +), cachedInputTokens: cacheRead, outputTokens: output, costUsd: cost)
    }
}
