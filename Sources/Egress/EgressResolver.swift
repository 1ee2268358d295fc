import AgentProcess
import DispatchCore
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Names to addresses for the egress proxy: `getaddrinfo` on threads of its own (the resolver may wait on the
/// network), and this machine's own addresses (`getifaddrs`), which no agent may reach.
package final class EgressResolver: Sendable {
    private let own = Mutex<(at: ContinuousClock.Instant, addresses: Set<IPAddress>)?>(nil)

    /// How long a look at this machine's addresses stands.
    static let ownAddressesFor: Duration = .seconds(30)

    /// The proxy's own threads for lookups: a slow name server holds them, never the runner's blocking pool
    /// (checkouts, disk walks). Each run has only a few lookups under way at once (``EgressLimits/lookupsPerRun``).
    /// One for the process, started at the first lookup and never stopped.
    private static let lookups: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    package init() {}

    /// The addresses `host` resolves to (an address literal is its own), in the resolver's order, on `loop`.
    func resolve(_ host: String, on loop: any EventLoop) -> EventLoopFuture<[IPAddress]> {
        if let literal = IPAddress(host) { return loop.makeSucceededFuture([literal]) }
        return Self.lookups.runIfActive(eventLoop: loop) { Self.lookUp(host) }.recover { _ in [] }
    }

    /// `getaddrinfo` for TCP: every distinct address, or none when the name does not resolve.
    static func lookUp(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let address = Self.address(current.pointee.ai_addr), !addresses.contains(address) { addresses.append(address) }
            entry = current.pointee.ai_next
        }
        return addresses
    }

    /// The IP address of a `sockaddr` (IPv4 or IPv6), or `nil`.
    static func address(_ pointer: UnsafeMutablePointer<sockaddr>?) -> IPAddress? {
        guard let pointer else { return nil }
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                withUnsafeBytes(of: v4.pointee.sin_addr) { IPAddress(bytes: Array($0)) }
            }
        case AF_INET6:
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                withUnsafeBytes(of: v6.pointee.sin6_addr) { IPAddress(bytes: Array($0)) }
            }
        default:
            return nil
        }
    }

    /// This machine's addresses (every interface's), looked at again after ``ownAddressesFor``.
    func ownAddresses() -> Set<IPAddress> {
        let now = ContinuousClock.now
        if let known = own.withLock({ $0 }), now - known.at < Self.ownAddressesFor { return known.addresses }
        var addresses = Set<IPAddress>()
        var list: UnsafeMutablePointer<ifaddrs>?
        if getifaddrs(&list) == 0, let first = list {
            var entry: UnsafeMutablePointer<ifaddrs>? = first
            while let current = entry {
                if let address = Self.address(current.pointee.ifa_addr) { addresses.insert(address) }
                entry = current.pointee.ifa_next
            }
            freeifaddrs(first)
        }
        own.withLock { $0 = (now, addresses) }
        return addresses
    }
}
