import Foundation

/// The throwaway PostgreSQL `make test` starts (`.ci/postgres.sh`), as `DISPATCH_TEST_DATABASE_URL`.
package enum TestDatabase {
    /// The server's URL, if one was started.
    package static var serverURL: String? { ProcessInfo.processInfo.environment["DISPATCH_TEST_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 } }

    /// Whether the PostgreSQL tests must run (`make test` says so); without it a missing server skips them.
    package static var required: Bool { ProcessInfo.processInfo.environment["DISPATCH_POSTGRES_TESTS"] == "required" }

    /// A new, empty database on the test server for one test; its URL. `nil` when no server was started.
    package static func fresh(_ label: String = "t") throws -> String? {
        guard let server = serverURL, var components = URLComponents(string: server) else { return nil }
        let name = "\(label)_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        let created = try psql(server, "CREATE DATABASE \(name)")
        guard created.exitCode == 0 else { throw GitFixtureError(message: "cannot create a test database: \(created.stderr)") }
        components.path = "/\(name)"
        return components.string
    }

    /// Runs one SQL command with `psql` against `url`, the password in the environment, not in argv (where every
    /// local user could read it from /proc).
    package static func psql(_ url: String, _ sql: String) throws -> CommandResult {
        var components = URLComponents(string: url)
        let password = components?.password ?? ""
        components?.password = nil
        return try CommandRunner.run(
            "/usr/bin/psql",
            [components?.string ?? url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
            environment: ["PGPASSWORD": password]
        )
    }
}
