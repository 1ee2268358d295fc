import HTTPTypes
import Hummingbird
import NIOCore

/// The operator console (CONTRACT §9): `GET /ui` and `GET /ui/requests/<requestId>` answer one self-contained page
/// (its script and style come from this server too, `/ui/console.js` and `/ui/console.css`). The page needs no token;
/// its data does: the script sends the one the operator typed in (or passed as `#token=…`) with every API call.
enum ConsoleRoutes {
    /// What the page may load and run: only this origin's script and style, no inline code or handlers, no frames,
    /// no forms posting anywhere, nothing from another host.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

    static func add<Context: RequestContext>(to router: Router<Context>) {
        router.get("ui") { _, _ in page(ConsoleAssets.html, type: "text/html; charset=utf-8") }
        router.get("ui/requests/:requestId") { _, _ in page(ConsoleAssets.html, type: "text/html; charset=utf-8") }
        router.get("ui/console.js") { _, _ in page(ConsoleAssets.script, type: "text/javascript; charset=utf-8") }
        router.get("ui/console.css") { _, _ in page(ConsoleAssets.style, type: "text/css; charset=utf-8") }
    }

    /// A static part of the console with the headers that keep it to itself.
    static func page(_ text: String, type: String) -> Response {
        var headers: HTTPFields = [.contentType: type, .cacheControl: "no-store"]
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        if let name = HTTPField.Name("x-content-type-options") { headers[name] = "nosniff" }
        if let name = HTTPField.Name("referrer-policy") { headers[name] = "no-referrer" }
        if let name = HTTPField.Name("cross-origin-opener-policy") { headers[name] = "same-origin" }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
