import Foundation

/// A request that failed validation; `field` names the offending field.
package struct RequestValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The JSON field at fault (`"body"` when the document itself is unusable).
    package var field: String
    /// What is wrong, as a sentence fragment.
    package var message: String

    /// Creates a validation error for `field`.
    package init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    package var description: String { "invalid \(field): \(message)" }
}

/// Turns untrusted JSON into a ``DispatchRequest`` or an error naming the field (CONTRACT §1).
package enum RequestValidator {
    /// Largest accepted task, in UTF-8 bytes.
    package static let maxTaskBytes = 256 * 1024
    /// Budget bounds, in seconds.
    package static let timeoutRange: ClosedRange<Double> = 1...86_400

    /// Validates a request id: 1–128 chars of `[A-Za-z0-9._:-]`, not `.`/`..`, no leading `.`.
    package static func validateRequestId(_ id: String, field: String = "requestId") throws(RequestValidationError) {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-".utf8)
        guard !id.isEmpty else { throw RequestValidationError(field: field, message: "must not be empty") }
        guard id.utf8.count <= 128 else {
            throw RequestValidationError(field: field, message: "must be at most 128 characters (got \(id.utf8.count))")
        }
        guard id.utf8.allSatisfy({ allowed.contains($0) }) else {
            throw RequestValidationError(field: field, message: "may contain only A-Z a-z 0-9 . _ : -")
        }
        guard !id.hasPrefix(".") else { throw RequestValidationError(field: field, message: "must not start with '.'") }
    }

    /// Parses and validates a JSON request body.
    package static func validate(json data: Data) throws(RequestValidationError) -> DispatchRequest {
        let document: JSONValue
        do {
            document = try JSONValue(parsing: data)
        } catch {
            throw RequestValidationError(field: "body", message: "is not valid JSON")
        }
        guard case .object(let object) = document else {
            throw RequestValidationError(field: "body", message: "must be a JSON object")
        }
        return try validate(object)
    }

    /// Validates an already-parsed JSON object.
    package static func validate(_ body: [String: JSONValue]) throws(RequestValidationError) -> DispatchRequest {
        if let field = firstFieldWithNUL(.object(body)) { throw RequestValidationError(field: field, message: "must not contain NUL (U+0000)") }
        let fields = FieldReader(body)
        let requestId = try fields.requiredString("requestId")
        try validateRequestId(requestId)
        let task = try fields.requiredString("task")
        guard !task.isEmpty else { throw RequestValidationError(field: "task", message: "must not be empty") }
        guard task.utf8.count <= maxTaskBytes else {
            throw RequestValidationError(field: "task", message: "must be at most \(maxTaskBytes) bytes of UTF-8 (got \(task.utf8.count))")
        }
        let tool: AgentTool = try fields.requiredEnum("tool")
        var request = DispatchRequest(requestId: requestId, task: task, tool: tool)
        request.canary = try fields.canary()
        if request.canary != nil, tool != .canary {
            throw RequestValidationError(field: "canary", message: "is only allowed with tool \"canary\"")
        }
        if let timeout = try fields.optionalNumber("timeout") {
            guard timeoutRange.contains(timeout) else {
                throw RequestValidationError(field: "timeout", message: "must be between 1 and 86400 seconds (got \(timeout))")
            }
            request.timeout = timeout
        }
        if let cwd = try fields.optionalString("cwd") {
            guard cwd.hasPrefix("/") else { throw RequestValidationError(field: "cwd", message: "must be an absolute path") }
            guard !cwd.utf8.contains(0) else { throw RequestValidationError(field: "cwd", message: "must not contain NUL") }
            request.cwd = cwd
        }
        try readPlacement(fields, into: &request)
        try readAgentAndIdentity(fields, into: &request)
        return request
    }
}

extension RequestValidator {
    static func checkArgument(_ value: String?, field: String) throws(RequestValidationError) {
        if let value, let problem = HostileValueRules.argumentProblem(value) { throw RequestValidationError(field: field, message: problem) }
    }

    /// The path of the first string anywhere in `value` that holds a NUL (`verificationCommands[2]`, `canary.scenario`).
    static func firstFieldWithNUL(_ value: JSONValue, path: String = "") -> String? {
        switch value {
        case .string(let string):
            return string.utf8.contains(0) ? (path.isEmpty ? "body" : path) : nil
        case .object(let object):
            for key in object.keys.sorted() {
                let child = path.isEmpty ? key : "\(path).\(key)"
                if key.utf8.contains(0) { return path.isEmpty ? "body" : path }
                if let found = firstFieldWithNUL(object[key]!, path: child) { return found }
            }
            return nil
        case .array(let array):
            for (index, item) in array.enumerated() {
                if let found = firstFieldWithNUL(item, path: "\(path)[\(index)]") { return found }
            }
            return nil
        case .null, .bool, .number:
            return nil
        }
    }
}

/// Typed access to JSON fields that names the field in every error.
private struct FieldReader {
    let body: [String: JSONValue]
    /// Put before every field name in errors (`canary.` for the nested object).
    let prefix: String

    init(_ body: [String: JSONValue], prefix: String = "") {
        self.body = body
        self.prefix = prefix
    }

    private func value(_ name: String) -> JSONValue? {
        guard let value = body[name], value != .null else { return nil }
        return value
    }

    func requiredString(_ name: String) throws(RequestValidationError) -> String {
        guard let raw = value(name) else {
            throw RequestValidationError(field: prefix + name, message: "is required")
        }
        guard case .string(let string) = raw else { throw RequestValidationError(field: prefix + name, message: "must be a string") }
        return string
    }

    func optionalString(_ name: String) throws(RequestValidationError) -> String? {
        guard let raw = value(name) else { return nil }
        guard case .string(let string) = raw else { throw RequestValidationError(field: prefix + name, message: "must be a string") }
        return string
    }

    func optionalNonEmptyString(_ name: String) throws(RequestValidationError) -> String? {
        guard let string = try optionalString(name) else { return nil }
        guard !string.isEmpty else { throw RequestValidationError(field: prefix + name, message: "must not be empty") }
        return string
    }

    func optionalBool(_ name: String) throws(RequestValidationError) -> Bool? {
        guard let raw = value(name) else { return nil }
        guard case .bool(let bool) = raw else {
            throw RequestValidationError(field: prefix + name, message: "must be a boolean")
        }
        return bool
    }

    func optionalNumber(_ name: String) throws(RequestValidationError) -> Double? {
        guard let raw = value(name) else { return nil }
        guard case .number(let double) = raw else {
            throw RequestValidationError(field: prefix + name, message: "must be a number")
        }
        guard double.isFinite else { throw RequestValidationError(field: prefix + name, message: "must be a finite number") }
        return double
    }

    func optionalInt(_ name: String, in range: ClosedRange<Int>) throws(RequestValidationError) -> Int? {
        guard let double = try optionalNumber(name) else { return nil }
        guard double == double.rounded(), let int = Int(exactly: double), range.contains(int) else {
            throw RequestValidationError(field: prefix + name, message: "must be an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return int
    }

    func requiredEnum<E: RawRepresentable & CaseIterable>(_ name: String) throws(RequestValidationError) -> E where E.RawValue == String {
        let raw = try requiredString(name)
        return try Self.parseEnum(raw, prefix + name)
    }

    func optionalEnum<E: RawRepresentable & CaseIterable>(_ name: String) throws(RequestValidationError) -> E? where E.RawValue == String {
        guard let raw = try optionalString(name) else { return nil }
        return try Self.parseEnum(raw, prefix + name)
    }

    static func parseEnum<E: RawRepresentable & CaseIterable>(_ raw: String, _ name: String) throws(RequestValidationError) -> E
    where E.RawValue == String {
        guard let value = E(rawValue: raw) else {
            let allowed = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw RequestValidationError(field: name, message: "must be one of \(allowed) (got \"\(raw.prefix(64))\")")
        }
        return value
    }

    func optionalStringArray(_ name: String, nonEmptyItems: Bool) throws(RequestValidationError) -> [String]? {
        guard let raw = value(name) else { return nil }
        guard case .array(let array) = raw else { throw RequestValidationError(field: prefix + name, message: "must be an array of strings") }
        var strings: [String] = []
        for (index, item) in array.enumerated() {
            guard case .string(let string) = item else {
                throw RequestValidationError(field: "\(prefix)\(name)[\(index)]", message: "must be a string")
            }
            if nonEmptyItems, string.isEmpty {
                throw RequestValidationError(field: "\(prefix)\(name)[\(index)]", message: "must not be empty")
            }
            strings.append(string)
        }
        return strings
    }

    /// `network`: `"none"` or `{"allow": ["host", "host:port", "*.domain", …]}` (CONTRACT §10); whether the operator
    /// allows the entries is checked at admission.
    func network() throws(RequestValidationError) -> NetworkRequest? {
        guard let raw = value("network") else { return nil }
        if case .string(let word) = raw {
            guard word == "none" else { throw RequestValidationError(field: "network", message: "must be \"none\" or {\"allow\": [hosts]}") }
            return NetworkRequest.none
        }
        guard case .object(let object) = raw, Set(object.keys) == ["allow"] else {
            throw RequestValidationError(field: "network", message: "must be \"none\" or {\"allow\": [hosts]}")
        }
        let entries = try FieldReader(object, prefix: "network.").optionalStringArray("allow", nonEmptyItems: true) ?? []
        guard entries.count <= 100 else { throw RequestValidationError(field: "network.allow", message: "must have at most 100 entries") }
        var rules: [EgressRule] = []
        for (index, entry) in entries.enumerated() {
            guard let rule = EgressRule(entry) else {
                throw RequestValidationError(field: "network.allow[\(index)]", message: "must be a host, host:port or *.domain")
            }
            rules.append(rule)
        }
        return .allow(rules)
    }

    func canary() throws(RequestValidationError) -> CanarySpec? {
        guard let raw = value("canary") else { return nil }
        guard case .object(let object) = raw else { throw RequestValidationError(field: "canary", message: "must be an object") }
        let inner = FieldReader(object, prefix: "canary.")
        var spec = CanarySpec()
        if let scenario: CanarySpec.Scenario = try inner.optionalEnum("scenario") { spec.scenario = scenario }
        if let v = try inner.optionalInt("sleepSeconds", in: 0...86_400) { spec.sleepSeconds = v }
        if let v = try inner.optionalInt("orphanDelaySeconds", in: 0...3600) { spec.orphanDelaySeconds = v }
        if let v = try inner.optionalInt("exitCode", in: 0...255) { spec.exitCode = v }
        return spec
    }

}

extension RequestValidator {
    /// Where the request runs: mode, backend, sandbox, base revision, repository and branch (in the order checked).
    private static func readPlacement(_ fields: FieldReader, into request: inout DispatchRequest) throws(RequestValidationError) {
        request.executionMode = try fields.optionalEnum("executionMode") ?? .host
        request.sandboxBackend = try fields.optionalEnum("sandboxBackend")
        request.sandbox = try fields.optionalEnum("sandbox")
        request.baseSha = try fields.optionalNonEmptyString("baseSha")
        if let baseSha = request.baseSha, let problem = HostileValueRules.revisionProblem(baseSha) {
            throw RequestValidationError(field: "baseSha", message: problem)
        }
        request.repoUrl = try fields.optionalNonEmptyString("repoUrl")
        if let url = request.repoUrl, HostileValueRules.urlHasCredentials(url) {
            // The URL itself is never repeated: it holds a secret.
            throw RequestValidationError(
                field: "repoUrl",
                message: "must not carry credentials (user:password@ or a token); use the Secret named by DISPATCH_K8S_GIT_SECRET"
            )
        }
        request.branch = try fields.optionalNonEmptyString("branch")
    }

    /// The agent's settings and the request's identity fields (in the order checked).
    private static func readAgentAndIdentity(_ fields: FieldReader, into request: inout DispatchRequest) throws(RequestValidationError) {
        request.model = try fields.optionalString("model")
        try checkArgument(request.model, field: "model")
        request.fallbackModels = try fields.optionalStringArray("fallbackModels", nonEmptyItems: false) ?? []
        guard request.fallbackModels.count <= HostileValueRules.maxFallbackModels else {
            throw RequestValidationError(
                field: "fallbackModels",
                message: "must have at most \(HostileValueRules.maxFallbackModels) entries (got \(request.fallbackModels.count))"
            )
        }
        for (index, model) in request.fallbackModels.enumerated() { try checkArgument(model, field: "fallbackModels[\(index)]") }
        request.agent = try fields.optionalString("agent")
        try checkArgument(request.agent, field: "agent")
        request.readFiles = try fields.optionalBool("readFiles")
        request.verificationCommands = try fields.optionalStringArray("verificationCommands", nonEmptyItems: true) ?? []
        request.workflowId = try fields.optionalString("workflowId")
        request.storyId = try fields.optionalString("storyId")
        request.sessionId = try fields.optionalString("sessionId")
        request.network = try fields.network()
        request.traceparent = try fields.optionalString("traceparent")
        if let traceparent = request.traceparent, let problem = Self.traceparentProblem(traceparent) {
            throw RequestValidationError(field: "traceparent", message: problem)
        }
        for (field, value) in [("workflowId", request.workflowId), ("storyId", request.storyId), ("sessionId", request.sessionId)] {
            if let value, let problem = HostileValueRules.identifierProblem(value) { throw RequestValidationError(field: field, message: problem) }
        }
    }
}

extension RequestValidator {
    /// Why `value` is not a W3C `traceparent` (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not all
    /// zero, lower case), or `nil` when it is one.
    package static func traceparentProblem(_ value: String) -> String? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        let hex = { (part: Substring, count: Int) in part.count == count && part.allSatisfy { "0123456789abcdef".contains($0) } }
        guard parts.count == 4, hex(parts[0], 2), parts[0] != "ff", hex(parts[1], 32), hex(parts[2], 16), hex(parts[3], 2) else {
            return "must be a W3C traceparent: 00-<32 lower-case hex>-<16 lower-case hex>-<2 hex>"
        }
        if parts[1].allSatisfy({ $0 == "0" }) || parts[2].allSatisfy({ $0 == "0" }) { return "has an all-zero trace or parent id" }
        return nil
    }
}
