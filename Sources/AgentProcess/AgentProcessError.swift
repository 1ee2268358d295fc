import Foundation

/// Why a process could not be started or supervised.
public struct AgentProcessError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case executableNotFound, spawnFailed, fileSetupFailed, notReaped }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The program is not on PATH or not executable.
        public static let executableNotFound = Code(.executableNotFound)
        /// `posix_spawn` failed.
        public static let spawnFailed = Code(.spawnFailed)
        /// A stdin, stdout or stderr file could not be prepared.
        public static let fileSetupFailed = Code(.fileSetupFailed)
        /// The process did not go away even after SIGKILL.
        public static let notReaped = Code(.notReaped)

        public var description: String { String(describing: value) }
    }

    public let code: Code
    /// A sentence saying what failed, on what, and why.
    public let message: String
    /// The errno involved, if any.
    public let errno: Int32?

    public init(code: Code, message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String { message }
}
