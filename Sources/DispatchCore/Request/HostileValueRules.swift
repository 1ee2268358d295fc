/// The rules for values that name things on a command line, in git or in a URL (CONTRACT §1 "Hostile values").
///
/// Each returns what is wrong as a sentence fragment, or `nil` when the value is acceptable, so the validator
/// can name the field around it.
package enum HostileValueRules {
    /// Longest accepted `model`, `agent`, correlation id or fallback entry.
    package static let maxNameLength = 256
    /// Most `fallbackModels` entries.
    package static let maxFallbackModels = 16
    /// Largest `N` in a `~N` / `^N` suffix of `baseSha`.
    package static let maxAncestry = 10_000

    /// `model`, `fallbackModels[i]`, `agent`: passed to agent CLIs as one argv element after a flag, so they must
    /// not look like a flag, split, or carry terminal control.
    package static func argumentProblem(_ value: String) -> String? {
        if value.isEmpty { return "must not be empty" }
        if value.count > maxNameLength { return "must be at most \(maxNameLength) characters (got \(value.count))" }
        if value.hasPrefix("-") { return "must not start with '-'" }
        if value.unicodeScalars.contains(where: { isControl($0) || $0.properties.isWhitespace }) {
            return "must not contain whitespace or control characters"
        }
        return nil
    }

    /// `workflowId`, `storyId`, `sessionId`: recorded in results, labels and paths.
    package static func identifierProblem(_ value: String) -> String? {
        if value.count > maxNameLength { return "must be at most \(maxNameLength) characters (got \(value.count))" }
        if value.unicodeScalars.contains(where: isControl) { return "must not contain control characters" }
        return nil
    }

    /// `baseSha`: a 4–64 digit hex object id, or a ref name `git check-ref-format --allow-onelevel` accepts,
    /// optionally followed by one `~N` or `^N` (N ≤ 10000). No reflog, message-search or path forms.
    package static func revisionProblem(_ value: String) -> String? {
        let bytes = Array(value.utf8)
        if (4...64).contains(bytes.count), bytes.allSatisfy(isHex) { return nil }
        if bytes.first == UInt8(ascii: "-") { return "must not start with '-'" }
        var name = bytes[...]
        if let marker = bytes.lastIndex(where: { $0 == UInt8(ascii: "~") || $0 == UInt8(ascii: "^") }) {
            let digits = bytes[(marker + 1)...]
            guard digits.allSatisfy(isDigit), digits.count <= 5 else {
                return "must be a commit id or a ref name, optionally followed by ~N or ^N"
            }
            if let n = Int(String(decoding: digits, as: UTF8.self)), n > maxAncestry {
                return "must not go back more than \(maxAncestry) commits (got \(n))"
            }
            name = bytes[..<marker]
        }
        if let problem = refNameProblem(name) { return problem }
        return nil
    }

    /// `git check-ref-format --allow-onelevel` (without `--normalize` or `--refspec-pattern`).
    static func refNameProblem(_ name: ArraySlice<UInt8>) -> String? {
        let invalid = "must be a commit id or a ref name git accepts"
        if name.isEmpty { return "must be a commit id or a ref name (nothing before ~ or ^)" }
        if name.elementsEqual("@".utf8) { return "\(invalid) (not '@')" }
        if name.first == UInt8(ascii: "/") || name.last == UInt8(ascii: "/") || name.last == UInt8(ascii: ".") {
            return "\(invalid) (it must not start or end with '/' or end with '.')"
        }
        var previous: UInt8 = 0
        for byte in name {
            if byte < 0x20 || byte == 0x7f { return "\(invalid) (no control characters)" }
            if " ~^:?*[\\".utf8.contains(byte) { return "\(invalid) (no space or any of ~ ^ : ? * [ \\ inside it)" }
            if previous == UInt8(ascii: "."), byte == UInt8(ascii: ".") { return "\(invalid) (no '..')" }
            if previous == UInt8(ascii: "/"), byte == UInt8(ascii: "/") { return "\(invalid) (no '//')" }
            if previous == UInt8(ascii: "@"), byte == UInt8(ascii: "{") { return "\(invalid) (no reflog '@{' forms)" }
            previous = byte
        }
        for component in name.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.first == UInt8(ascii: ".") { return "\(invalid) (no component may start with '.')" }
            if component.count >= 5, component.suffix(5).elementsEqual(".lock".utf8) {
                return "\(invalid) (no component may end with '.lock')"
            }
        }
        return nil
    }

    /// Whether a URL carries credentials in its userinfo: `user:password@` anywhere, or any userinfo over http(s)
    /// (`https://TOKEN@host/…`). A login name alone over ssh (`ssh://git@host/…`, scp-like `git@host:path`) is
    /// not a secret and is allowed.
    package static func urlHasCredentials(_ url: String) -> Bool {
        guard let schemeEnd = url.range(of: "://") else {
            // scp-like `user@host:path`: a password (`user:password@host:path`) is the only secret it can carry.
            let head = url.prefix { $0 != "/" }
            guard let at = head.firstIndex(of: "@") else { return false }
            return head[..<at].contains(":")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard let at = authority.lastIndex(of: "@") else { return false }
        let userinfo = authority[..<at]
        return userinfo.contains(":") || !["ssh", "git+ssh", "ssh+git"].contains(scheme)
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }

    static func isHex(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}
