import Foundation

/// Reads newline-delimited JSON objects, skipping lines that are not JSON objects.
enum JSONLines {
    /// Every line of `text` that is a JSON object, decoded as `Event`; other lines are skipped.
    ///
    /// A line counts only when the whole of it is valid JSON (checked by ``JSONValue/init(parsing:)``), however
    /// little of it `Event` reads; `Event` itself must decode from any object.
    static func events<Event: Decodable>(_ type: Event.Type, in text: String) -> [Event] {
        let decoder = JSONDecoder()
        var events: [Event] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard trimmed.first == "{" else { continue }
            let data = Data(trimmed.utf8)
            guard case .object? = try? JSONValue(parsing: data), let event = try? decoder.decode(Event.self, from: data) else { continue }
            events.append(event)
        }
        return events
    }
}

extension KeyedDecodingContainer {
    /// The value for `key` if it is there and of type `T`; `nil` otherwise, never an error, so one odd field
    /// leaves the rest of the event readable (as `event["key"] as? T` did).
    func lenient<T: Decodable>(_ type: T.Type, forKey key: Key) -> T? {
        (try? decodeIfPresent(type, forKey: key)) ?? nil
    }
}
