import HTTPTypes
import Hummingbird

/// Requires `Authorization: Bearer <token>` (or `x-otel-emit-token: <token>`) on `/internal/*`.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else { return try await next(request, context) }
        var presented: String?
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            presented = String(header.dropFirst("Bearer ".count))
        } else if let name = HTTPField.Name("x-otel-emit-token"), let header = request.headers[name] {
            presented = header
        }
        guard let presented, Self.constantTimeEquals(presented, token) else { throw APIError.unauthorized }
        return try await next(request, context)
    }

    /// Compares without an early exit, so response time does not reveal how much of the token matched.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
