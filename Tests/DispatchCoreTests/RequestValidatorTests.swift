import DispatchCore
import Foundation
import Testing

@Suite struct RequestValidatorTests {
    /// Applies `changes` (`nil` removes a field) to a valid body and validates it as JSON text, the way a request arrives.
    func validate(_ changes: [String: Any?]) throws(RequestValidationError) -> DispatchRequest {
        var body: [String: Any] = ["requestId": "req-1", "task": "do it", "tool": "codex"]
        for (key, value) in changes { body[key] = value }
        return try RequestValidator.validate(json: try! JSONSerialization.data(withJSONObject: body))
    }

    /// Applies a JSON patch (`null` removes a field) to a valid body.
    func validate(patch: String) throws(RequestValidationError) -> DispatchRequest {
        let object = try! JSONSerialization.jsonObject(with: Data(patch.utf8)) as! [String: Any]
        return try validate(object.mapValues { $0 is NSNull ? nil : $0 })
    }

    @Test func minimalRequestGetsDefaults() throws {
        let request = try validate([:])
        #expect(request.timeout == 600)
        #expect(request.executionMode == .host)
        #expect(request.sandboxBackend == nil)
        #expect(request.fallbackModels.isEmpty)
        #expect(request.modelAttempts == [nil])
    }

    @Test func fullRequestRoundTrips() throws {
        let request = try validate([
            "timeout": 30, "cwd": "/tmp", "executionMode": "sandbox", "sandboxBackend": "k8s", "sandbox": "read-only",
            "baseSha": "abc123", "repoUrl": "https://example.invalid/r.git", "branch": "main", "model": "m1",
            "fallbackModels": ["m2", "m3"], "agent": "reviewer", "readFiles": true, "verificationCommands": ["make test"],
            "workflowId": "wf", "storyId": "st", "sessionId": "se", "someUnknownField": 42,
        ])
        #expect(request.timeout == 30)
        #expect(request.sandboxBackend == .k8s)
        #expect(request.sandbox == .readOnly)
        #expect(request.modelAttempts == ["m1", "m2", "m3"])
        #expect(request.readFiles == true)
        let data = try JSONEncoder().encode(request)
        #expect(try JSONDecoder().decode(DispatchRequest.self, from: data) == request)
    }

    @Test(arguments: [
        ("", "requestId"), (".", "requestId"), ("..", "requestId"), (".hidden", "requestId"), ("../x", "requestId"),
        ("a/b", "requestId"), ("a\u{0}b", "requestId"), (String(repeating: "a", count: 129), "requestId"), ("sp ace", "requestId"),
        ("ünïcode", "requestId"),
    ])
    func badRequestIdsAreRejected(id: String, field: String) {
        #expect(throws: RequestValidationError.self) { try validate(["requestId": id]) }
        do { _ = try validate(["requestId": id]) } catch { #expect(error.field == field) }
    }

    @Test(arguments: ["a", "A.b_c:d-e", String(repeating: "z", count: 128), "x..y"])
    func goodRequestIdsAreAccepted(id: String) throws {
        #expect(try validate(["requestId": id]).requestId == id)
    }

    @Test(arguments: [
        (#"{"requestId":null}"#, "requestId"), (#"{"requestId":5}"#, "requestId"),
        (#"{"task":null}"#, "task"), (#"{"task":""}"#, "task"), (#"{"task":7}"#, "task"),
        (#"{"tool":null}"#, "tool"), (#"{"tool":"gpt"}"#, "tool"), (#"{"tool":true}"#, "tool"),
        (#"{"timeout":0}"#, "timeout"), (#"{"timeout":0.5}"#, "timeout"), (#"{"timeout":86401}"#, "timeout"),
        (#"{"timeout":"60"}"#, "timeout"), (#"{"timeout":true}"#, "timeout"),
        (#"{"cwd":"relative/dir"}"#, "cwd"), (#"{"cwd":3}"#, "cwd"),
        (#"{"executionMode":"docker"}"#, "executionMode"), (#"{"sandboxBackend":"ecs"}"#, "sandboxBackend"),
        (#"{"sandbox":"yolo"}"#, "sandbox"), (#"{"model":""}"#, "model"), (#"{"model":1}"#, "model"),
        (#"{"fallbackModels":"m2"}"#, "fallbackModels"), (#"{"fallbackModels":["ok",3]}"#, "fallbackModels[1]"),
        (#"{"verificationCommands":[""]}"#, "verificationCommands[0]"), (#"{"readFiles":"yes"}"#, "readFiles"),
        (#"{"readFiles":1}"#, "readFiles"), (#"{"workflowId":9}"#, "workflowId"),
        (#"{"canary":{"scenario":"x"},"tool":"canary"}"#, "canary.scenario"),
        (#"{"canary":{"sleepSeconds":-1},"tool":"canary"}"#, "canary.sleepSeconds"),
        (#"{"canary":{"exitCode":300},"tool":"canary"}"#, "canary.exitCode"),
        (#"{"canary":"sleep","tool":"canary"}"#, "canary"),
        (#"{"canary":{"scenario":"sleep-timeout"}}"#, "canary"),
    ])
    func everyRuleNamesItsField(patch: String, field: String) {
        do {
            let request = try validate(patch: patch)
            Issue.record("accepted \(patch): \(request)")
        } catch {
            #expect(error.field == field, "\(error)")
        }
    }

    @Test func taskOverTheLimitIsRejected() {
        do {
            _ = try validate(["task": String(repeating: "x", count: 256 * 1024 + 1)])
            Issue.record("accepted an oversized task")
        } catch {
            #expect(error.field == "task")
        }
    }

    @Test func taskAtTheLimitIsAccepted() throws {
        let task = String(repeating: "é", count: 128 * 1024)  // 2 bytes each: exactly 256 KiB
        #expect(try validate(["task": task]).task.utf8.count == 256 * 1024)
    }

    @Test func canaryDefaults() throws {
        let bare = try validate(["tool": "canary"])
        #expect(bare.effectiveCanary.scenario == .sleepTimeout)
        #expect(bare.effectiveCanary.sleepSeconds == 120)
        let orphan = try validate(["tool": "canary", "canary": ["scenario": "orphan-stderr"]])
        #expect(orphan.effectiveCanary.orphanDelaySeconds == 2)
        #expect(orphan.effectiveCanary.exitCode == 7)
    }

    @Test(arguments: [
        "{", "[1,2]", "\"str\"", "null", "",
        // Malformed anywhere, even in a field nobody reads, is malformed.
        #"{"requestId":"a","task":"t","tool":"codex","x":"\ud800"}"#, #"{"requestId":"a","task":"t","tool":"codex","x":[1e400]}"#,
    ])
    func malformedBodiesAreRejected(body: String) {
        do {
            _ = try RequestValidator.validate(json: Data(body.utf8))
            Issue.record("accepted \(body)")
        } catch {
            #expect(error.field == "body")
        }
    }
}
