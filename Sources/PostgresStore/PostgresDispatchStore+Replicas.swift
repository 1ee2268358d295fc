import DispatchStore
import PostgresNIO

extension PostgresDispatchStore {
    /// Records that replica `name` is alive now (the database's clock) and reachable at `url`.
    package func advertise(replica name: String, url: String?) async throws {
        let query: PostgresQuery = """
            INSERT INTO replica (name, url, seen_at) VALUES (\(name), \(url), now())
            ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, seen_at = now()
            """
        try await client.query(query, logger: logger)
    }

    /// Replica `name`'s URL and how long ago (by the database's clock) it last advertised itself.
    package func replica(named name: String) async throws -> ReplicaInfo? {
        let query: PostgresQuery = """
            SELECT url, (EXTRACT(EPOCH FROM (now() - seen_at)) * 1000)::bigint FROM replica WHERE name = \(name)
            """
        for try await (url, silentForMs) in try await client.query(query, logger: logger).decode((String?, Int64).self) {
            return ReplicaInfo(name: name, url: url, silentForMs: silentForMs)
        }
        return nil
    }
}
