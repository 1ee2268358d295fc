import Foundation
import Synchronization

/// Locations tests need: the package root, the fake agents, the built `dispatch` binary.
package enum TestPaths {
    /// The package root (this file is `Tests/DispatchTestSupport/TestPaths.swift`).
    package static let packageRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }()

    /// `canaries/bin`, holding the fake `codex`, `claude` and `pi`.
    package static var fakeBin: String { "\(packageRoot)/canaries/bin" }

    /// The fake agent executable for `tool`.
    package static func fake(_ tool: String) -> String { "\(fakeBin)/\(tool)" }

    /// Who host-mode agents run as in tests whose work dirs are root-owned temp dirs: root, the operator's explicit
    /// opt-out (`DISPATCH_AGENT_USER=root`), as tests that predate agent users expect. The containment tests give
    /// their work dirs to a user, or clear it (an empty value) to see a root-owned work dir refused.
    package static let hostAgentUser = "root"

    /// The `dispatch` binary: `$DISPATCH_BIN`, else next to the test bundle in the build directory.
    package static var dispatchBinary: String {
        if let path = ProcessInfo.processInfo.environment["DISPATCH_BIN"], !path.isEmpty { return path }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundle.appendingPathComponent("dispatch").path, "\(packageRoot)/.build/debug/dispatch"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return "\(packageRoot)/.build/debug/dispatch"
    }
}

/// A fresh temporary directory per test, removed when the value is released.
package final class TempDir: Sendable {
    package let path: String
    /// Tasks that live as long as the directory (a PostgreSQL store's connection pool), cancelled with it.
    private let tasks = Mutex<[Task<Void, Never>]>([])

    /// A directory under `parent` (default: the temp dir).
    package init(_ prefix: String = "dispatch-test", in parent: String = NSTemporaryDirectory()) {
        let base = (parent.hasSuffix("/") ? parent : parent + "/") + "\(prefix)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = (base as NSString).resolvingSymlinksInPath
    }

    deinit {
        for task in tasks.withLock({ $0 }) { task.cancel() }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Runs `operation` until the directory is released.
    package func keepRunning(_ operation: @escaping @Sendable () async -> Void) {
        let task = Task(operation: operation)
        tasks.withLock { $0.append(task) }
    }

    /// A path inside the directory.
    package func child(_ name: String) -> String { "\(path)/\(name)" }
}
