import ArgumentParser
import DispatchCore
import DispatchStore
import Foundation
import PostgresStore

/// `dispatch store`: moving the store between its two implementations (CONTRACT §8).
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Move dispatches between stores.",
        subcommands: [StoreImportCommand.self]
    )
}

/// `dispatch store import --from <state dir>`: copies an SQLite store into the PostgreSQL one `DISPATCH_DATABASE_URL`
/// names, oldest first (so the list keeps its order), with every sandbox row. Ids already there are left as they are
/// (the import can be run again); nothing is removed from the SQLite store.
struct StoreImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Copy an SQLite state dir's dispatches and sandboxes into the PostgreSQL store (DISPATCH_DATABASE_URL)."
    )

    @Option(name: .customLong("from"), help: "The state dir whose dispatch.sqlite is copied.") var from: String
    @OptionGroup var state: StateOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: "\(absolute(from))/dispatch.sqlite") else {
            throw ValidationError("--from \(from) holds no dispatch.sqlite")
        }
        guard DispatchConfiguration().databaseURL != nil else {
            throw ValidationError("DISPATCH_DATABASE_URL must name the PostgreSQL store to import into")
        }
    }

    func run() async throws {
        let configuration = state.configuration()
        let source = try SQLiteDispatchStore(stateDir: absolute(from), inboxDir: "\(absolute(from))/inbox")
        guard let raw = configuration.databaseURL else { throw ValidationError("DISPATCH_DATABASE_URL is not set") }
        let url: DatabaseURL
        do { url = try DatabaseURL(raw) } catch { throw ValidationError("\(error)") }
        let target = try await openPostgresStore(url, configuration, logger: CLILogging.logger(level: .warning))
        var (imported, present) = (0, 0)
        for record in try await source.list(limit: Int.max).reversed() {
            switch try await target.insert(record.result, request: record.request, owner: record.owner) {
            case .inserted: imported += 1
            case .existing: present += 1
            }
        }
        let sandboxes = try await source.sandboxes()
        for sandbox in sandboxes { try await target.saveSandbox(sandbox) }
        let summary = ImportSummary(imported: imported, alreadyPresent: present, sandboxes: sandboxes.count, into: url.redacted)
        print(String(decoding: try StoreJSON.encode(summary), as: UTF8.self))
    }

    /// What the import printed: how many dispatches it copied, how many were there already, and where to.
    struct ImportSummary: Encodable {
        var ok = true
        var imported: Int
        var alreadyPresent: Int
        var sandboxes: Int
        var into: String
    }
}
