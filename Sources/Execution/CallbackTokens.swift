import Crypto
import Foundation

/// Per-request callback tokens (CONTRACT §5): the only credential a k8s Job holds.
///
/// A token is an HMAC-SHA256 of the requestId under a key derived from the admin token, so every runner that
/// holds the admin token (every replica) can check one without storing it, and a token opens nothing but
/// `POST /internal/agent-result` for its own request. The admin token itself never leaves the runner.
package struct CallbackTokens: Sendable {
    private let key: SymmetricKey

    /// Derives the signing key from the admin token (a separate key, so a callback token reveals nothing of it).
    package init(adminToken: String) {
        let derived = HMAC<SHA256>.authenticationCode(
            for: Data("agent-dispatch callback-token v1".utf8),
            using: SymmetricKey(data: Data(adminToken.utf8))
        )
        key = SymmetricKey(data: Data(derived))
    }

    /// The callback token of `requestId`.
    package func token(for requestId: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Data(requestId.utf8), using: key)
        return Self.prefix + code.map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `presented` is the callback token of `requestId` (constant time in the token's bytes).
    package func verify(_ presented: String, requestId: String) -> Bool {
        TokenComparison.constantTimeEquals(presented, token(for: requestId))
    }

    /// Marks the token's kind and version, so a later scheme can be told apart.
    static let prefix = "cb1-"
}

/// Token comparison without an early exit, so response time does not reveal how much of a token matched.
package enum TokenComparison {
    package static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
