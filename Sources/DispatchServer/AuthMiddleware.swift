import DispatchCore
import Dispatcher
import Execution
import Foundation
import HTTPTypes
import Hummingbird

/// Requires the admin token as `Authorization: Bearer <token>` (or `x-otel-emit-token: <token>`).
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let presented = Self.presentedToken(request), TokenComparison.constantTimeEquals(presented, token) else {
            throw APIError.unauthorized
        }
        return try await next(request, context)
    }

    /// The token a request presents, if any.
    static func presentedToken(_ request: Request) -> String? {
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            return String(header.dropFirst("Bearer ".count))
        }
        if let name = HTTPField.Name("x-otel-emit-token"), let header = request.headers[name] { return header }
        return nil
    }
}

/// On a loopback listener, answers 421 to any request whose `Host` is not this machine or an allowed name, before
/// anything else runs: a web page that rebinds a DNS name to 127.0.0.1 reaches the socket but not the service.
struct HostCheckMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Extra names accepted (`--allowed-host`, `DISPATCH_ALLOWED_HOSTS`), lowercased, without ports.
    let allowedHosts: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authority = request.head.authority, Self.accepts(authority, allowed: allowedHosts) else {
            throw APIError(status: .misdirectedRequest, message: "Host \(Self.printable(request.head.authority)) is not served here")
        }
        return try await next(request, context)
    }

    static func accepts(_ authority: String, allowed: Set<String>) -> Bool {
        if LoopbackAddress.isLoopbackHostHeader(authority) { return true }
        guard let host = LoopbackAddress.hostPart(ofHostHeader: authority) else { return false }
        return allowed.contains(host)
    }

    /// The presented Host, shortened and stripped of control characters, for the error.
    static func printable(_ authority: String?) -> String {
        guard let authority else { return "(missing)" }
        return "\"" + String(authority.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }.prefix(100).map(Character.init)) + "\""
    }
}

/// A POST with a body must say `Content-Type: application/json`; anything else (the `text/plain` a web page may
/// send without a CORS preflight) gets 415 before any route runs.
struct JSONContentTypeMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .post || request.method == .put || request.method == .patch, Self.hasBody(request),
            !Self.isJSON(request.headers[.contentType])
        {
            throw APIError(status: .unsupportedMediaType, message: "a request body must be sent as Content-Type: application/json")
        }
        return try await next(request, context)
    }

    static func hasBody(_ request: Request) -> Bool {
        if request.headers[.transferEncoding] != nil { return true }
        guard let length = request.headers[.contentLength] else { return false }
        return Int(length).map { $0 > 0 } ?? true
    }

    static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let media = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        return media == "application/json"
    }
}
