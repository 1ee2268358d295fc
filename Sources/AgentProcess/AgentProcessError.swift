import Foundation

/// Why a process could not be started or supervised.
package struct AgentProcessError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case executableNotFound, spawnFailed, fileSetupFailed, notReaped, isolationUnavailable }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The program is not on PATH or not executable.
        package static let executableNotFound = Code(.executableNotFound)
        /// `posix_spawn` failed.
        package static let spawnFailed = Code(.spawnFailed)
        /// A stdin, stdout or stderr file could not be prepared.
        package static let fileSetupFailed = Code(.fileSetupFailed)
        /// The process did not go away even after SIGKILL.
        package static let notReaped = Code(.notReaped)
        /// The isolation asked for (`DISPATCH_ISOLATION`) cannot work here.
        package static let isolationUnavailable = Code(.isolationUnavailable)

        package var description: String { String(describing: value) }
    }

    package let code: Code
    /// A sentence saying what failed, on what, and why.
    package let message: String
    /// The errno involved, if any.
    package let errno: Int32?

    package init(code: Code, message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    package var description: String { message }
}
