import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// An error answered as `{"ok":false,"error":…}` with its status; the only place HTTP statuses are chosen for failures.
struct APIError: HTTPResponseError {
    var status: HTTPResponse.Status
    var message: String
    var field: String?
    var extra: [String: String] = [:]

    var headers: HTTPFields { [.contentType: "application/json"] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONBody.response(encoding: ErrorBody(error: message, field: field, extra: extra), status: status)
    }

    static func badRequest(_ message: String, field: String? = nil) -> APIError { APIError(status: .badRequest, message: message, field: field) }
    static let unauthorized = APIError(status: .unauthorized, message: "missing or wrong token")
    static func notFound(_ requestId: String) -> APIError {
        APIError(status: .notFound, message: "unknown requestId \(requestId)", extra: ["status": "unknown"])
    }
}

/// Maps every thrown error to a JSON response (Hummingbird's own body is not JSON).
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            let message: String =
                switch error.status {
                case .contentTooLarge: "request body is larger than 1 MiB"
                case .notFound: "no such route"
                case .methodNotAllowed: "method not allowed"
                default: "\(error)"
                }
            return JSONBody.response(encoding: ErrorBody(error: message), status: error.status)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            return JSONBody.response(encoding: ErrorBody(error: "internal error: \(error)"), status: .internalServerError)
        }
    }
}

/// JSON responses.
enum JSONBody {
    /// `value` as sorted-key JSON with `status`.
    static func response<T: Encodable>(encoding value: T, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
