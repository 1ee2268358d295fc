import CGit2

/// Process-wide libgit2 set-up, done once before the first handle is made.
enum Libgit2 {
    static let initialized: Bool = {
        git_libgit2_init()
        // Objects come from the host's own database, which git already verified on write; re-hashing every
        // blob on read roughly doubles checkout time on large trees. git does not verify on read either.
        _ = cgit2_set_strict_hash_verification(0)
        return true
    }()

    static func ensureInitialized() { _ = initialized }
}

/// Owns one libgit2 object handle and frees it on deinit.
final class Handle {
    let pointer: OpaquePointer
    private let free: (OpaquePointer) -> Void

    init(_ pointer: OpaquePointer, free: @escaping (OpaquePointer) -> Void) {
        self.pointer = pointer
        self.free = free
    }

    deinit { free(pointer) }
}

/// Reads a `git_buf` into a Swift value and disposes of it.
func consume<R>(_ buffer: inout git_buf, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    defer { git_buf_dispose(&buffer) }
    guard let ptr = buffer.ptr else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
    return ptr.withMemoryRebound(to: UInt8.self, capacity: buffer.size) { body(UnsafeBufferPointer(start: $0, count: buffer.size)) }
}
