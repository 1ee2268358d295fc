import Foundation

/// This process's replica name (CONTRACT §8): `DISPATCH_REPLICA_NAME`, else the hostname. Rows a replica owns in a
/// shared store carry it, so peers can name the replica, reach it, and leave its sandboxes to it.
package enum ReplicaName {
    package static let current: String = {
        let configured = ProcessInfo.processInfo.environment["DISPATCH_REPLICA_NAME"] ?? ""
        return configured.isEmpty ? ProcessInfo.processInfo.hostName : configured
    }()
}
