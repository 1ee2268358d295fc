import DispatchStore
import Foundation
import NIOSSL
import PostgresNIO

/// `DISPATCH_DATABASE_URL` (`postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`)
/// turned into a client configuration. The password comes from the URL, else `PGPASSWORD`, else the file
/// `DISPATCH_DATABASE_PASSWORD_FILE` names; it is never logged (``redacted`` is what messages show).
package struct DatabaseURL: Sendable, CustomStringConvertible {
    package var host: String
    package var port: Int
    package var user: String
    package var password: String?
    package var database: String
    /// `disable` (the default on loopback), `prefer` or `require` (the default elsewhere; `verify-full` is
    /// `require`: certificates are always verified against the system's roots).
    package var sslMode: String

    /// Parses `url`, taking a missing password from `environment`. Errors say which part is wrong, never the password.
    package init(_ url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? "") else {
            throw DispatchStoreError(code: .openFailed, message: "DISPATCH_DATABASE_URL must be postgres://user@host:port/database")
        }
        guard let host = components.host, !host.isEmpty else {
            throw DispatchStoreError(code: .openFailed, message: "DISPATCH_DATABASE_URL has no host")
        }
        guard let user = components.user, !user.isEmpty else {
            throw DispatchStoreError(code: .openFailed, message: "DISPATCH_DATABASE_URL has no user")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty else { throw DispatchStoreError(code: .openFailed, message: "DISPATCH_DATABASE_URL has no database") }
        // No TLS is asked for on loopback; anywhere else TLS is required unless the URL says otherwise (`prefer` can be
        // downgraded by anyone on the path, who would then see the password).
        let loopback = ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased())
        let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? (loopback ? "disable" : "require")
        guard ["disable", "prefer", "require", "verify-ca", "verify-full"].contains(mode) else {
            throw DispatchStoreError(code: .openFailed, message: "DISPATCH_DATABASE_URL sslmode \(mode): must be disable, prefer or require")
        }
        self.host = host
        self.port = components.port ?? 5432
        // URLComponents has already percent-decoded user, password and path: decoding again would change a `%2F`.
        self.user = user
        self.database = database
        self.sslMode = mode
        if let password = components.password {
            self.password = password
        } else if let password = environment["PGPASSWORD"], !password.isEmpty {
            self.password = password
        } else if let file = environment["DISPATCH_DATABASE_PASSWORD_FILE"], !file.isEmpty {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw DispatchStoreError(code: .openFailed, message: "cannot read DISPATCH_DATABASE_PASSWORD_FILE \(file)")
            }
            self.password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// The URL without its password, for messages and logs.
    package var redacted: String { "postgres://\(user)@\(host):\(port)/\(database)?sslmode=\(sslMode)" }

    package var description: String { redacted }

    /// The postgres-nio client configuration.
    var configuration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch sslMode {
            case "disable": .disable
            case "prefer": .prefer(.makeClientConfiguration())
            default: .require(.makeClientConfiguration())
            }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.maximumConnections = 16
        return configuration
    }
}
