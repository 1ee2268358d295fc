import CGit2

/// A libgit2 failure: the operation, libgit2's own message and its error code and class.
package struct GitError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable { case notFound, ambiguous, invalid, failed }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The object, reference or repository does not exist (`GIT_ENOTFOUND`).
        package static let notFound = Code(.notFound)
        /// An abbreviated id matches several objects (`GIT_EAMBIGUOUS`).
        package static let ambiguous = Code(.ambiguous)
        /// The input is not a valid spec, path or id (`GIT_EINVALIDSPEC`).
        package static let invalid = Code(.invalid)
        /// Any other libgit2 error.
        package static let failed = Code(.failed)

        init(libgit2 code: Int32) {
            switch code {
            case GIT_ENOTFOUND.rawValue: self = .notFound
            case GIT_EAMBIGUOUS.rawValue: self = .ambiguous
            case GIT_EINVALIDSPEC.rawValue: self = .invalid
            default: self = .failed
            }
        }

        package var description: String { String(describing: value) }
    }

    package let code: Code
    /// What we were doing, e.g. `resolve "abc123" in /repo`.
    package let operation: String
    /// libgit2's message for the failure.
    package let message: String
    /// The raw libgit2 return code.
    package let rawCode: Int32

    package init(code: Code, operation: String, message: String, rawCode: Int32 = -1) {
        self.code = code
        self.operation = operation
        self.message = message
        self.rawCode = rawCode
    }

    package var description: String { "cannot \(operation): \(message)" }
}

/// Throws a ``GitError`` for a negative libgit2 return code, reading `git_error_last()` at once
/// (libgit2 errors are per-thread: nothing may run in between).
@inline(__always)
func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(GitError) {
    guard result < 0 else { return }
    let message = git_error_last().map { String(cString: $0.pointee.message) } ?? "libgit2 error \(result)"
    throw GitError(code: GitError.Code(libgit2: result), operation: operation(), message: message, rawCode: result)
}
