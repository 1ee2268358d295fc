import DispatchStore
import Foundation
import Logging
import PostgresNIO

extension PostgresDispatchStore {
    /// LISTENs on one connection until it drops; `.resync` once listening (what was committed before is read again).
    static func listen(_ connection: PostgresConnection, continuation: AsyncStream<StoreEvent>.Continuation) async throws {
        try await connection.listen(on: PostgresSchema.channel) { notifications in
            continuation.yield(.resync)
            for try await notification in notifications {
                let payload = notification.payload
                if payload.hasPrefix("terminal:") {
                    continuation.yield(.committed(requestId: String(payload.dropFirst("terminal:".count))))
                } else if payload.hasPrefix("queued:") {
                    continuation.yield(.queued(requestId: String(payload.dropFirst("queued:".count))))
                }
            }
        }
    }

    /// LISTEN/NOTIFY announces every replica's terminal commits.
    package var announcesCommits: Bool { true }

    /// Terminal commits of every replica, from LISTEN on one pooled connection. When that connection drops it is
    /// made again (after a second), and `.resync` says that anything may have been missed meanwhile; `.resync` also
    /// follows the first LISTEN, for what was committed before it.
    package func events() -> AsyncStream<StoreEvent>? {
        let client = self.client
        let logger = self.logger
        return AsyncStream { continuation in
            let task = Task {
                while !Task.isCancelled {
                    do {
                        try await client.withConnection { connection in
                            try await Self.listen(connection, continuation: continuation)
                        }
                    } catch {
                        if Task.isCancelled { break }
                        logger.warning("the store's notification connection dropped; listening again", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
