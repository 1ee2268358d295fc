import Foundation

/// Reads newline-delimited JSON objects, skipping lines that are not JSON objects.
enum JSONLines {
    static func objects(_ text: String) -> [[String: Any]] {
        var objects: [[String: Any]] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard trimmed.first == "{", let data = trimmed.data(using: .utf8),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { continue }
            objects.append(object)
        }
        return objects
    }

    /// Joins the `text` parts of a message `content` (a string or an array of `{type:text,text}` parts).
    static func text(ofContent content: Any?) -> String? {
        if let string = content as? String { return string }
        guard let parts = content as? [[String: Any]] else { return nil }
        let texts = parts.compactMap { part -> String? in
            guard (part["type"] as? String) == "text" else { return nil }
            return part["text"] as? String
        }
        return texts.isEmpty ? nil : texts.joined()
    }
}
