/// Why a sandbox could not be made, exported or removed.
public struct SandboxError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case notARepository, baseNotFound, cwdOutsideRepo, materializeFailed, exportFailed, timedOut, removeFailed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        public static let notARepository = Code(.notARepository)
        public static let baseNotFound = Code(.baseNotFound)
        public static let cwdOutsideRepo = Code(.cwdOutsideRepo)
        public static let materializeFailed = Code(.materializeFailed)
        public static let exportFailed = Code(.exportFailed)
        public static let timedOut = Code(.timedOut)
        public static let removeFailed = Code(.removeFailed)

        public var description: String { String(describing: value) }
    }

    public let code: Code
    /// A sentence: what failed, on what, why.
    public let message: String
    public let underlying: (any Error)?

    public init(code: Code, message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }
}
