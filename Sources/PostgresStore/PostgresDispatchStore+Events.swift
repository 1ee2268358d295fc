import DispatchCore
import DispatchStore
import Foundation
import Logging
import PostgresNIO

extension PostgresDispatchStore {
    /// LISTENs on one connection until it drops; `.resync` once listening (what was committed before is read again).
    static func listen(_ connection: PostgresConnection, handle: @Sendable (StoreEvent) async -> Void) async throws {
        try await connection.listen(on: PostgresSchema.channel) { notifications in
            await handle(.resync)
            for try await notification in notifications {
                let payload = notification.payload
                if payload.hasPrefix("terminal:") {
                    await handle(.committed(requestId: String(payload.dropFirst("terminal:".count))))
                } else if payload.hasPrefix("queued:") {
                    await handle(.queued(requestId: String(payload.dropFirst("queued:".count))))
                } else if payload.hasPrefix("cancel:") {
                    await handle(.cancelRequested(requestId: String(payload.dropFirst("cancel:".count))))
                }
            }
        }
    }

    /// Records the cancel (the first reason wins) for a non-terminal request; the trigger announces it.
    package func requestCancel(_ requestId: String, reason: String) async throws -> Bool {
        let query: PostgresQuery = """
            INSERT INTO cancel_request (request_id, reason, requested_at)
            SELECT request_id, \(reason), \(ISO8601.string(Date())) FROM dispatch WHERE request_id = \(requestId) AND status IN ('queued', 'running')
            ON CONFLICT (request_id) DO NOTHING
            """
        try await client.query(query, logger: logger)
        return true
    }

    /// Cancels asked for and not acted on.
    package func pendingCancels() async throws -> [String: String] {
        var pending: [String: String] = [:]
        let rows = try await client.query(
            """
            SELECT c.request_id, c.reason FROM cancel_request c JOIN dispatch d ON d.request_id = c.request_id
            WHERE d.status IN ('queued', 'running')
            """,
            logger: logger
        )
        for try await (id, reason) in rows.decode((String, String).self) { pending[id] = reason }
        return pending
    }

    /// LISTEN/NOTIFY announces every replica's terminal commits.
    package var announcesCommits: Bool { true }

    /// Terminal commits of every replica, from LISTEN on one pooled connection, handed to `handle` in the calling
    /// task until it is cancelled. When that connection drops it is made again (after a second), and `.resync` says
    /// that anything may have been missed meanwhile; `.resync` also follows the first LISTEN, for what was committed
    /// before it.
    package func watchEvents(_ handle: @Sendable (StoreEvent) async -> Void) async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await Self.listen(connection, handle: handle)
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("the store's notification connection dropped; listening again", metadata: ["error": "\(error)"])
            }
            // Backoff before listening again.
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
