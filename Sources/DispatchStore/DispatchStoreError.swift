/// A failure of the state store or the inbox.
public struct DispatchStoreError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case openFailed, corruptRecord, notFound, writeFailed }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The database or its directory could not be opened or migrated.
        public static let openFailed = Code(.openFailed)
        /// A stored document could not be decoded.
        public static let corruptRecord = Code(.corruptRecord)
        /// No record has that id.
        public static let notFound = Code(.notFound)
        /// A write to the database failed (full disk, I/O error, an injected fault).
        public static let writeFailed = Code(.writeFailed)

        public var description: String { String(describing: value) }
    }

    public let code: Code
    /// What failed, on what, why.
    public let message: String
    /// The underlying error.
    public let underlying: (any Error)?

    public init(code: Code, message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        underlying.map { "\(message): \($0)" } ?? message
    }
}
