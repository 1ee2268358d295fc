// swift-tools-version:6.2
import Foundation
import PackageDescription

/// The commit being built, read from `.git` when the manifest is evaluated (no git subprocess), for `GET /`.
func gitSHA() -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
    guard let head = try? String(contentsOfFile: "\(root)/.git/HEAD", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    else { return "unknown" }
    guard head.hasPrefix("ref: ") else { return head }
    let ref = String(head.dropFirst(5))
    if let sha = try? String(contentsOfFile: "\(root)/.git/\(ref)", encoding: .utf8) { return sha.trimmingCharacters(in: .whitespacesAndNewlines) }
    let packed = (try? String(contentsOfFile: "\(root)/.git/packed-refs", encoding: .utf8)) ?? ""
    return packed.split(separator: "\n").first { $0.hasSuffix(" \(ref)") }.map { String($0.prefix(40)) } ?? "unknown"
}

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "agent-dispatch",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dispatch", targets: ["DispatchTool"]),
        // The per-run monitor `serve` starts around each isolated agent attempt (CONTRACT §7); installed beside `dispatch`.
        .executable(name: "dispatch-monitor", targets: ["DispatchMonitor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // Traces over OTLP/HTTP (CONTRACT §11); the gRPC exporter is left out (its build is the heaviest of all).
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
    ],
    targets: [
        // Not named `dispatch`: its entry symbol would be `dispatch_main`, which collides with libdispatch.
        .executableTarget(
            name: "DispatchTool",
            dependencies: ["DispatchCLI"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "DispatchMonitor"),
        .executableTarget(
            name: "DispatchBench",
            dependencies: ["AgentProcess", "Sandbox", "DispatchCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DispatchCLI",
            dependencies: [
                "Dispatcher", "DispatchServer", "Execution", "Sandbox", "DispatchStore", "PostgresStore", "DispatchCore", "Git", "Kube",
                "AgentProcess", "Egress",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DispatchServer",
            dependencies: [
                "Dispatcher", "Execution", "DispatchStore", "DispatchCore", "Sandbox", "CBuildInfo", "AgentProcess",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Dispatcher",
            dependencies: [
                "Execution", "AgentProcess", "DispatchStore", "DispatchCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Execution",
            dependencies: [
                "AgentProcess", "DispatchCore", "Egress",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Sandbox",
            dependencies: [
                "Execution", "Egress", "Git", "DispatchStore", "DispatchCore", "AgentProcess",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Egress",
            dependencies: [
                "AgentProcess", "DispatchCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AgentProcess",
            dependencies: ["CProcessSpawn"],
            swiftSettings: swiftSettings
        ),
        .target(name: "CProcessSpawn"),
        .target(name: "CBuildInfo", cSettings: [.define("DISPATCH_GIT_SHA", to: "\"\(gitSHA())\"")]),
        .target(
            name: "DispatchStore",
            dependencies: [
                "DispatchCore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "DispatchCore", swiftSettings: swiftSettings),
        // The PostgreSQL store for several replicas (CONTRACT §8).
        .target(
            name: "PostgresStore",
            dependencies: [
                "DispatchStore", "DispatchCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "Git", dependencies: ["CGit2"], swiftSettings: swiftSettings),
        .target(
            name: "Kube",
            dependencies: [
                "DispatchCore", "DispatchStore", "Execution", "Sandbox", "Git", "AgentProcess",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .systemLibrary(name: "CGit2", pkgConfig: "libgit2", providers: [.apt(["libgit2-dev"])]),
        .target(
            name: "DispatchTestSupport",
            dependencies: [
                "DispatchCore", "AgentProcess", "CProcessSpawn", "DispatchStore", "PostgresStore", "Dispatcher", "Execution", "Sandbox",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            path: "Tests/DispatchTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "DispatchCoreTests", dependencies: ["DispatchCore", "DispatchTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EgressTests",
            dependencies: [
                "Egress", "DispatchCore", "DispatchTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "AgentProcessTests", dependencies: ["AgentProcess", "DispatchTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DispatchStoreTests",
            dependencies: [
                "DispatchStore", "PostgresStore", "DispatchCore", "DispatchTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DispatcherTests",
            dependencies: [
                "Dispatcher", "Execution", "DispatchStore", "AgentProcess", "DispatchTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KubeTests",
            dependencies: [
                "Kube", "DispatchCore", "Dispatcher", "Execution", "DispatchStore", "DispatchTestSupport", "AgentProcess",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "GitTests", dependencies: ["Git", "DispatchTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SandboxTests",
            dependencies: [
                "Sandbox", "Execution", "Git", "Dispatcher", "DispatchStore", "AgentProcess", "DispatchTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DispatchServerTests",
            dependencies: [
                "DispatchServer", "Dispatcher", "Execution", "DispatchStore", "AgentProcess", "DispatchTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "DispatchCLITests", dependencies: ["DispatchTestSupport", "AgentProcess"], swiftSettings: swiftSettings),
    ]
)
