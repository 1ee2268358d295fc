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

    private enum CodingKeys: String, CodingKey {
        case type, result, message, subtype
        case isError = "is_error"
    }

    /// Reads each field leniently; fails only when the value is not an object.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = container.lenient(String.self, forKey: .type)
        result = container.lenient(String.self, forKey: .result)
        isError = container.lenient(Bool.self, forKey: .isError) ?? (container.lenient(Double.self, forKey: .isError) == 1)
        message = container.lenient(AgentMessage.self, forKey: .message)
        subtype = container.lenient(String.self, forKey: .subtype)
    }
}
