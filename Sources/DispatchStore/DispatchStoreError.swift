/// A failure of the state store or the inbox.
package struct DispatchStoreError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case openFailed, corruptRecord, notFound, writeFailed }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The database or its directory could not be opened or migrated.
        package static let openFailed = Code(.openFailed)
        /// A stored document could not be decoded.
        package static let corruptRecord = Code(.corruptRecord)
        /// No record has that id.
        package static let notFound = Code(.notFound)
        /// A write to the database failed (full disk, I/O error, an injected fault).
        package static let writeFailed = Code(.writeFailed)

        package var description: String { String(describing: value) }
    }

    package let code: Code
    /// What failed, on what, why.
    package let message: String
    /// The underlying error.
    package let underlying: (any Error)?

    package init(code: Code, message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    package var description: String {
        underlying.map { "\(message): \($0)" } ?? message
    }
}
