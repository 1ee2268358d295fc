import Crypto
import DispatchCore
import Foundation

/// The deterministic name and place of a request's sandbox: `<root>/<workflow>/<story>/<sandboxId>`.
package struct SandboxIdentity: Sendable, Equatable {
    /// `<slug of requestId>-<8 hex of sha256(workflow/story/request)>`.
    package var sandboxId: String
    /// The sandbox directory.
    package var path: String

    package init(request: DispatchRequest, root: String) {
        let workflow = request.workflowId ?? ""
        let story = request.storyId ?? ""
        let hash = Self.sha256Hex("\(workflow)\u{0}\(story)\u{0}\(request.requestId)").prefix(8)
        sandboxId = "\(Self.slug(request.requestId, max: 48))-\(hash)"
        path = "\(root)/\(Self.slug(workflow, max: 48))/\(Self.slug(story, max: 48))/\(sandboxId)"
    }

    /// Lowercase `[a-z0-9-]`, runs of other characters collapsed to `-`, trimmed, at most `max` characters; `_` if empty.
    package static func slug(_ text: String, max: Int) -> String {
        var out = ""
        var lastDash = false
        for scalar in text.lowercased().unicodeScalars {
            if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) {
                out.unicodeScalars.append(scalar)
                lastDash = false
            } else if !lastDash, !out.isEmpty {
                out.append("-")
                lastDash = true
            }
            if out.count >= max { break }
        }
        while out.hasSuffix("-") { out.removeLast() }
        return out.isEmpty ? "_" : out
    }
}

extension SandboxIdentity {
    /// Lower-case hex SHA-256 of the UTF-8 bytes of `text` (swift-crypto).
    static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
