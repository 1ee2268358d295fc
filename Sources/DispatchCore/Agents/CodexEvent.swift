/// One line of `codex exec --json` output, as far as ``CodexAdapter`` reads it: both event shapes,
/// `{"type":"item.completed","item":{…}}` / `turn.*` / `error`, and the older `{"msg":{"type":…}}`.
///
/// Every field is optional and one of the wrong type reads as missing, so any JSON object decodes.
struct CodexEvent: Decodable {
    /// `type`: `item.completed`, `turn.completed`, `turn.failed`, `error`, …
    var type: String?
    /// `item` of `item.completed`.
    var item: Item?
    /// `error` of `turn.failed`.
    var error: ErrorBody?
    /// `message` of a top-level `error` event.
    var message: String?
    /// `msg` of the older shape.
    var msg: Msg?
    /// `usage` of `turn.completed`: the thread's totals so far.
    var usage: Usage?

    private enum CodingKeys: String, CodingKey {
        case type, item, error, message, msg, usage
    }

    /// Reads each field leniently; fails only when the value is not an object.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = container.lenient(String.self, forKey: .type)
        item = container.lenient(Item.self, forKey: .item)
        error = container.lenient(ErrorBody.self, forKey: .error)
        message = container.lenient(String.self, forKey: .message)
        msg = container.lenient(Msg.self, forKey: .msg)
        usage = container.lenient(Usage.self, forKey: .usage)
    }
}

extension CodexEvent {
    /// `usage` of `turn.completed` (codex 0.147: `input_tokens` with `cached_input_tokens` among them, `output_tokens`
    /// with `reasoning_output_tokens` among them; older versions lack the last); no cost.
    struct Usage: Decodable {
        var inputTokens: Int?
        var cachedInputTokens: Int?
        var outputTokens: Int?
        var reasoningOutputTokens: Int?

        private enum CodingKeys: String, CodingKey {
            case inputTokens = "input_tokens"
            case cachedInputTokens = "cached_input_tokens"
            case outputTokens = "output_tokens"
            case reasoningOutputTokens = "reasoning_output_tokens"
        }

        /// Reads each field leniently; fails only when the value is not an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            inputTokens = container.lenient(Int.self, forKey: .inputTokens)
            cachedInputTokens = container.lenient(Int.self, forKey: .cachedInputTokens)
            outputTokens = container.lenient(Int.self, forKey: .outputTokens)
            reasoningOutputTokens = container.lenient(Int.self, forKey: .reasoningOutputTokens)
        }

        /// As the contract names the figures.
        var agentUsage: AgentUsage {
            AgentUsage(
                inputTokens: inputTokens,
                cachedInputTokens: cachedInputTokens,
                outputTokens: outputTokens,
                reasoningTokens: reasoningOutputTokens
            )
        }
    }
}

extension CodexEvent {
    /// `item`: an agent message has `type: agent_message` (or, older, `item_type: assistant_message`) and `text`.
    struct Item: Decodable {
        /// `type`: `agent_message`, `reasoning`, `command_execution`, …
        var type: String?
        /// `item_type`, the older name: `assistant_message`.
        var itemType: String?
        /// `text` of the message.
        var text: String?
        /// `command` of a `command_execution`.
        var command: String?
        /// `aggregated_output` of a `command_execution`: what the command printed.
        var aggregatedOutput: String?
        /// `exit_code` of a `command_execution`.
        var exitCode: Int?
        /// `status` of a `command_execution` or `file_change`: `completed`, `failed`.
        var status: String?

        private enum CodingKeys: String, CodingKey {
            case type, text, command, status
            case itemType = "item_type"
            case aggregatedOutput = "aggregated_output"
            case exitCode = "exit_code"
        }

        /// Reads each field leniently; fails only when the value is not an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            type = container.lenient(String.self, forKey: .type)
            itemType = container.lenient(String.self, forKey: .itemType)
            text = container.lenient(String.self, forKey: .text)
            command = container.lenient(String.self, forKey: .command)
            aggregatedOutput = container.lenient(String.self, forKey: .aggregatedOutput)
            exitCode = container.lenient(Int.self, forKey: .exitCode)
            status = container.lenient(String.self, forKey: .status)
        }

        /// A command codex's own sandbox refused (it cannot nest inside another one: `bwrap: setting up uid map`),
        /// in words; `nil` for any other item. Such a run can end `turn.completed` having changed nothing.
        var sandboxRefusal: String? {
            // codex 0.147 reports an edit its sandbox refused only as a failed `file_change` (the refused command
            // itself is not printed).
            if type == "file_change", status == "failed" { return "codex could not apply a file change (status failed)" }
            guard type == "command_execution", let exitCode, exitCode != 0, let output = aggregatedOutput else { return nil }
            let markers = ["bwrap:", "landlock", "seccomp"]
            guard let line = output.split(whereSeparator: \.isNewline).first(where: { line in markers.contains { line.contains($0) } })
            else { return nil }
            return "codex's own sandbox refused `\((command ?? "a command").prefix(200))` (exit \(exitCode)): \(line.prefix(300))"
        }

        /// Whether this item is the agent's answer text.
        var isAgentMessage: Bool { type == "agent_message" || itemType == "assistant_message" }
    }

    /// `error`: `{"message": …}`.
    struct ErrorBody: Decodable {
        /// `message`: what went wrong.
        var message: String?

        private enum CodingKeys: String, CodingKey {
            case message
        }

        /// Reads each field leniently; fails only when the value is not an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            message = container.lenient(String.self, forKey: .message)
        }
    }

    /// `msg`: `type` `agent_message` (with `message`) or `task_complete` (with `last_agent_message`).
    struct Msg: Decodable {
        /// `type`: `agent_message`, `task_complete`, …
        var type: String?
        /// `message` of `agent_message`.
        var message: String?
        /// `last_agent_message` of `task_complete`.
        var lastAgentMessage: String?

        private enum CodingKeys: String, CodingKey {
            case type, message
            case lastAgentMessage = "last_agent_message"
        }

        /// Reads each field leniently; fails only when the value is not an object.
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            type = container.lenient(String.self, forKey: .type)
            message = container.lenient(String.self, forKey: .message)
            lastAgentMessage = container.lenient(String.self, forKey: .lastAgentMessage)
        }
    }
}
