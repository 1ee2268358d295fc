import GRDB

extension SQLiteDispatchStore {
    /// Schema history. Append new migrations; never edit a released one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-dispatch") { db in
            try db.create(table: "dispatch") { t in
                t.primaryKey("requestId", .text)
                t.column("status", .text).notNull()
                t.column("tool", .text).notNull()
                t.column("requestJSON", .text).notNull()
                t.column("resultJSON", .text).notNull()
                t.column("ownerJSON", .text)
                t.column("createdAt", .text).notNull()
                t.column("updatedAt", .text).notNull()
                t.column("sequence", .integer).notNull()
            }
            try db.create(index: "dispatch_status_sequence", on: "dispatch", columns: ["status", "sequence"])
            try db.create(index: "dispatch_sequence", on: "dispatch", columns: ["sequence"])
        }
        migrator.registerMigration("v2-sandbox") { db in
            try db.create(table: "sandbox") { t in
                t.primaryKey("sandboxId", .text)
                t.column("requestId", .text).notNull().indexed()
                t.column("state", .text).notNull().indexed()
                t.column("path", .text).notNull()
                t.column("repoPath", .text).notNull()
                t.column("workDir", .text).notNull()
                t.column("baseSha", .text).notNull()
                t.column("createdAt", .text).notNull()
                t.column("updatedAt", .text).notNull()
                t.column("cleanupAfter", .text)
            }
        }
        migrator.registerMigration("v3-lease") { db in
            // Epoch milliseconds until which the owner vouches for a non-terminal row (CONTRACT §3 leases).
            try db.alter(table: "dispatch") { t in t.add(column: "leaseExpiresAt", .integer) }
        }
        // The replica whose disk holds a sandbox (CONTRACT §8), as the shared store has it.
        migrator.registerMigration("v4-sandbox-replica") { db in
            try db.alter(table: "sandbox") { t in t.add(column: "replica", .text) }
        }
        // One row the readiness probe rewrites: a real write to the database file, which a full disk refuses.
        migrator.registerMigration("v5-readiness") { db in
            try db.create(table: "readiness") { t in
                t.primaryKey("id", .integer)
                t.column("at", .text).notNull()
            }
        }
        return migrator
    }
}
