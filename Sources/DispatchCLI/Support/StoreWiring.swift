import ArgumentParser
import DispatchCore
import DispatchStore
import Foundation
import Logging
import PostgresStore

/// The store a runner opens: PostgreSQL when `DISPATCH_DATABASE_URL` names one (CONTRACT §8), else the embedded
/// SQLite store in the state dir. A URL that cannot be read is a usage error (exit 2), saying which part is wrong.
func openStore(_ configuration: DispatchConfiguration, logger: Logger) async throws -> any DispatchStore {
    guard let raw = configuration.databaseURL else {
        return try SQLiteDispatchStore(stateDir: configuration.stateDir, inboxDir: configuration.inboxDir, leaseSeconds: configuration.leaseSeconds)
    }
    let url: DatabaseURL
    do {
        url = try DatabaseURL(raw)
    } catch {
        throw ValidationError("\(error)")
    }
    let store = try await openPostgresStore(url, configuration, logger: logger)
    try await refuseForgottenSQLiteRows(configuration, store: store)
    return store
}

/// The PostgreSQL store at `url`; its connection pool runs in the command's scope (``CommandScope``), for as long
/// as the command runs.
func openPostgresStore(_ url: DatabaseURL, _ configuration: DispatchConfiguration, logger: Logger) async throws -> PostgresDispatchStore {
    guard let scope = CommandScope.current else { preconditionFailure("a command opens its store inside its CommandScope") }
    return try await PostgresDispatchStore.open(
        url: url,
        stateDir: configuration.stateDir,
        inboxDir: configuration.inboxDir,
        leaseSeconds: configuration.leaseSeconds,
        logger: logger,
        running: scope.start
    )
}

/// A replica on PostgreSQL whose state dir still holds unfinished SQLite rows the database does not have would
/// silently forget them: refused until they are imported (`dispatch store import --from <state dir>`) or finished.
func refuseForgottenSQLiteRows(_ configuration: DispatchConfiguration, store: any DispatchStore) async throws {
    let database = "\(configuration.stateDir)/dispatch.sqlite"
    guard FileManager.default.fileExists(atPath: database) else { return }
    let local = try SQLiteDispatchStore(stateDir: configuration.stateDir, inboxDir: configuration.inboxDir)
    var unfinished = 0
    for record in try await local.nonTerminal() where try await store.record(record.requestId) == nil { unfinished += 1 }
    guard unfinished > 0 else { return }
    throw ValidationError(
        "the state dir \(configuration.stateDir) holds \(unfinished) unfinished dispatches in SQLite that the PostgreSQL store does not have: "
            + "import them first (dispatch store import --from \(configuration.stateDir)) or finish them without DISPATCH_DATABASE_URL"
    )
}
