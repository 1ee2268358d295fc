/// One line of `pi --mode json` output, as far as ``PiAdapter`` reads it: `message_end` / `turn_end` with a
/// `message`, and `agent_end` with all its `messages`.
///
/// Every field is optional and one of the wrong type reads as missing, so any JSON object decodes.
struct PiEvent: Decodable {
    /// `type`: `message_end`, `turn_end`, `agent_end`, …
    var type: String?
    /// `message` of `message_end` / `turn_end`.
    var message: AgentMessage?
    /// `messages` of `agent_end`; missing unless every element is an object.
    var messages: [AgentMessage]?

    private enum CodingKeys: String, CodingKey {
        case type, message, messages
    }

    /// Reads each field leniently; fails only when the value is not an object.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = container.lenient(String.self, forKey: .type)
        message = container.lenient(AgentMessage.self, forKey: .message)
        messages = container.lenient([AgentMessage].self, forKey: .messages)
    }
}
