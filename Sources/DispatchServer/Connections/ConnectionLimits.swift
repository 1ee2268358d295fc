import Foundation

/// What `serve` allows its HTTP clients (CONTRACT §7, "Connections"): the open-files limit raised to the hard one,
/// a cap on concurrent connections with descriptors kept back for runs and the store, and the time a connection gets
/// to send its request head and to idle between requests.
package struct ConnectionLimits: Sendable, Equatable {
    /// Most connections open at once; past it the listener stops accepting (new ones wait in the kernel's backlog)
    /// until one closes.
    package var maxConnections: Int
    /// A connection that has not sent a complete request head by then is closed.
    package var requestHeadTimeout: Duration = .seconds(10)
    /// A keep-alive connection idle this long between requests is closed. A request in progress (a long-poll, a log
    /// follow) is never idle.
    package var idleTimeout: Duration = .seconds(60)

    /// Limits with `maxConnections`.
    package init(maxConnections: Int) {
        self.maxConnections = maxConnections
    }

    /// Raises this process's soft open-files limit to its hard limit; returns the soft limit now in force.
    package static func raiseOpenFilesLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur > rlim_t(Int32.max) ? Int(Int32.max) : Int(limit.rlim_cur)
    }

    /// Descriptors kept back from connections: the store, log files, the processes' pipes and pidfds, outgoing
    /// HTTP — a fifth of the limit, at least 256.
    package static func reserve(openFilesLimit: Int) -> Int { max(256, openFilesLimit / 5) }

    /// The default cap for an open-files limit: what is left after the reserve, at least 16.
    package static func defaultMaxConnections(openFilesLimit: Int) -> Int {
        max(16, openFilesLimit - reserve(openFilesLimit: openFilesLimit))
    }

    /// The cap from `DISPATCH_MAX_CONNECTIONS` (a positive integer) or the default for `openFilesLimit`; an invalid
    /// value is an error naming the variable.
    package static func resolve(environment value: String?, openFilesLimit: Int) throws -> ConnectionLimits {
        guard let value, !value.isEmpty else { return ConnectionLimits(maxConnections: defaultMaxConnections(openFilesLimit: openFilesLimit)) }
        guard let count = Int(value), count >= 1 else {
            throw ConnectionLimitsError(description: "invalid DISPATCH_MAX_CONNECTIONS \(value): must be a positive integer")
        }
        return ConnectionLimits(maxConnections: count)
    }
}

/// An unusable connection setting.
package struct ConnectionLimitsError: Error, CustomStringConvertible {
    package var description: String
}
