import DispatchCore
import Foundation
import GRDB

/// Which process owns a non-terminal dispatch, so a later process can tell whether it died.
package struct RunnerOwner: Codable, Sendable, Equatable {
    /// What kind of process owns the row.
    package var kind: Kind
    package var pid: Int32
    /// Kernel start time of `pid` (clock ticks since boot), distinguishing a reused pid.
    package var startTime: UInt64?
    /// `/proc/sys/kernel/random/boot_id` of the machine.
    package var bootId: String?
    package var host: String
    /// The replica (`DISPATCH_REPLICA_NAME`, default the hostname) of a `serve`, so peers can name it and reach it.
    package var replica: String?
    /// Whether the owner's local runs are held by monitors that outlive it (CONTRACT §7): then a peer that cannot
    /// see them waits for their window before it ends such a run.
    package var monitors: Bool?

    /// Kinds of owning process. A struct, not an enum: a row written by a newer version with a kind this one does
    /// not know still decodes.
    package struct Kind: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
        package var rawValue: String
        package init(rawValue: String) { self.rawValue = rawValue }
        package init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
        package func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }
        package var description: String { rawValue }

        /// A `dispatch run` process.
        package static let run = Kind(rawValue: "run")
        /// A `dispatch serve` process.
        package static let serve = Kind(rawValue: "serve")
        /// A k8s job-runner.
        package static let job = Kind(rawValue: "job")
        /// A reader that ends a dead owner's row (`status`, `await`, the lease keeper).
        package static let recover = Kind(rawValue: "recover")
    }

    /// An owner of `kind`, identified by pid, its start time and the machine.
    package init(kind: Kind, pid: Int32, startTime: UInt64?, bootId: String?, host: String, replica: String? = nil) {
        self.replica = replica
        self.kind = kind
        self.pid = pid
        self.startTime = startTime
        self.bootId = bootId
        self.host = host
    }
}

/// One stored dispatch: the request, its current result and its owner.
package struct DispatchRecord: Sendable, Equatable {
    package var request: DispatchRequest
    package var result: DispatchResult
    package var owner: RunnerOwner?
    package var createdAt: String
    /// Insertion order, for FIFO queues.
    package var sequence: Int64
    /// Until when the owner's lease holds; past it, anyone may recover the row.
    package var leaseExpiresAt: Date?

    package var requestId: String { request.requestId }
    package var status: DispatchStatus { result.status }

    /// A record as a store read it.
    package init(
        request: DispatchRequest,
        result: DispatchResult,
        owner: RunnerOwner?,
        createdAt: String,
        sequence: Int64,
        leaseExpiresAt: Date?
    ) {
        self.request = request
        self.result = result
        self.owner = owner
        self.createdAt = createdAt
        self.sequence = sequence
        self.leaseExpiresAt = leaseExpiresAt
    }
}

/// The `dispatch` table row.
struct DispatchRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "dispatch"
    var requestId: String
    var status: String
    var tool: String
    var requestJSON: String
    var resultJSON: String
    var ownerJSON: String?
    var createdAt: String
    var updatedAt: String
    var sequence: Int64?
    var leaseExpiresAt: Int64?

    enum Columns {
        static let requestId = Column(CodingKeys.requestId)
        static let status = Column(CodingKeys.status)
        static let sequence = Column(CodingKeys.sequence)
    }

    /// The row of a queued request turned `running`, started at `startedAt` (its result JSON with it).
    mutating func start(at startedAt: String) throws {
        var result = try record().result
        result.markStarted(at: startedAt)
        status = DispatchStatus.running.rawValue
        resultJSON = try StoreJSON.string(result)
        updatedAt = startedAt
    }

    func record() throws -> DispatchRecord {
        do {
            let decoder = JSONDecoder()
            return DispatchRecord(
                request: try decoder.decode(DispatchRequest.self, from: Data(requestJSON.utf8)),
                result: try decoder.decode(DispatchResult.self, from: Data(resultJSON.utf8)),
                owner: try ownerJSON.map { try decoder.decode(RunnerOwner.self, from: Data($0.utf8)) },
                createdAt: createdAt,
                sequence: sequence ?? 0,
                leaseExpiresAt: leaseExpiresAt.map { Date(timeIntervalSince1970: Double($0) / 1000) }
            )
        } catch {
            throw DispatchStoreError(code: .corruptRecord, message: "stored dispatch \(requestId) cannot be decoded", underlying: error)
        }
    }
}

/// JSON encoding shared by the store and the inbox: stable key order, unescaped slashes.
package enum StoreJSON {
    package static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    package static func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }
}
