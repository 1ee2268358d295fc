/// Why a sandbox could not be made, exported or removed.
package struct SandboxError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case notARepository, baseNotFound, cwdOutsideRepo, materializeFailed, exportFailed, timedOut, removeFailed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        package static let notARepository = Code(.notARepository)
        package static let baseNotFound = Code(.baseNotFound)
        package static let cwdOutsideRepo = Code(.cwdOutsideRepo)
        package static let materializeFailed = Code(.materializeFailed)
        package static let exportFailed = Code(.exportFailed)
        package static let timedOut = Code(.timedOut)
        package static let removeFailed = Code(.removeFailed)

        package var description: String { String(describing: value) }
    }

    package let code: Code
    /// A sentence: what failed, on what, why.
    package let message: String
    package let underlying: (any Error)?

    package init(code: Code, message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    package var description: String { message }
}
