/// One line of `claude --output-format stream-json` output, as far as ``ClaudeAdapter`` reads it:
/// `{"type":"assistant","message":{…}}` and the final `{"type":"result","result":…,"is_error":…}`.
///
/// Every field is optional and one of the wrong type reads as missing, so any JSON object decodes.
struct ClaudeEvent: Decodable {
    /// `type`: `assistant`, `result`, …
    var type: String?
    /// `result`: the answer text of the `result` event.
    var result: String?
    /// `is_error` is `true` (or the number 1, which `as? Bool` also took).
    var isError: Bool
    /// `message` of an `assistant` event.
    var message: AgentMessage?
    /// `subtype` of the `result` event: `success`, or an `error_…` one (`error_max_turns`, `error_during_execution`).
    var subtype: String?
    /// `usage` of the `result` event: the session's tokens.
    var usage: Usage?
    /// `total_cost_usd` of the `result` event.
    var totalCostUsd: Double?

    private enum CodingKeys: String, CodingKey {
        case type, result, message, subtype, usage
        case isError = "is_error"
        case totalCostUsd = "total_cost_usd"
    }

    /// Reads each field leniently; fails only when the value is not an object.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = container.lenient(String.self, forKey: .type)
        result = container.lenient(String.self, forKey: .result)
        isError = container.lenient(Bool.self, forKey: .isError) ?? (container.lenient(Double.self, forKey: .isError) == 1)
        message = container.lenient(AgentMessage.self, forKey: .message)
        subtype = container.lenient(String.self, forKey: .subtype)
        usage = container.lenient(Usage.self, forKey: .usage)
        totalCostUsd = container.lenient(Double.self, forKey: .totalCostUsd)
    }

    /// The `result` event's usage and cost as the contract names them; `nil` when it has neither.
    var agentUsage: AgentUsage? {
        var usage = self.usage?.agentUsage ?? AgentUsage()
        usage.costUsd = totalCostUsd
        return usage.isEmpty ? nil : usage
    }
}

extension ClaudeEvent {
    /// The Messages API's `usage`: `input_tokens` are the uncached ones, cache reads and writes are counted apart;
    /// thinking tokens (`output_tokens_details.thinking_tokens`) are part of `output_tokens`.
    struct Usage: Decodable {
        var inputTokens: Int?
        var cacheCreationInputTokens: Int?
        var cacheReadInputTokens: Int?
        var outputTokens: Int?
        var thinkingTokens: Int?

        private enum CodingKeys: String, CodingKey {
            case inputTokens = "input_tokens"
            case cacheCreationInputTokens = "cache_creation_input_tokens"
            case cacheReadInputTokens = "cache_read_input_tokens"
            case outputTokens = "output_tokens"
            case outputTokensDetails = "output_tokens_details"
        }

        private enum DetailKeys: String, CodingKey {
            case thinkingTokens = "thinking_tokens"
        }

        /// Reads each field leniently; fails only when the value is not an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            inputTokens = container.lenient(Int.self, forKey: .inputTokens)
            cacheCreationInputTokens = container.lenient(Int.self, forKey: .cacheCreationInputTokens)
            cacheReadInputTokens = container.lenient(Int.self, forKey: .cacheReadInputTokens)
            outputTokens = container.lenient(Int.self, forKey: .outputTokens)
            let details = try? container.nestedContainer(keyedBy: DetailKeys.self, forKey: .outputTokensDetails)
            thinkingTokens = details?.lenient(Int.self, forKey: .thinkingTokens)
        }

        /// Input counted as codex counts it: every input token, the cached (read and written) ones included.
        var agentUsage: AgentUsage {
            let parts = [inputTokens, cacheCreationInputTokens, cacheReadInputTokens].compactMap(AgentUsage.tokens)
            return AgentUsage(
                inputTokens: parts.isEmpty ? nil : parts.reduce(0, +),
                cachedInputTokens: cacheReadInputTokens,
                outputTokens: outputTokens,
                reasoningTokens: thinkingTokens
            )
        }
    }
}
