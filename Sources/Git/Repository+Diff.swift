import CGit2
import Foundation

/// One changed path of a diff.
package struct DiffEntry: Sendable, Equatable {
    /// What happened to the path.
    package enum Change: String, Sendable {
        case added, deleted, modified, renamed, copied, typeChanged, untracked, other
    }

    package var change: Change
    package var oldPath: String
    package var newPath: String
}

/// The whole change from a base commit to the working tree; the patch itself went to a file.
package struct WorkingTreeChange: Sendable {
    /// Per-path entries (omitted files not among them).
    package var entries: [DiffEntry]
    /// Files left out of the patch because one side is larger than the limit.
    package var omitted: [OmittedPath]
    /// Bytes of patch written.
    package var patchBytes: Int64
}

/// A path left out of a patch, and the larger of its two sides' sizes.
package struct OmittedPath: Sendable, Equatable {
    package var path: String
    package var bytes: Int64
}

/// What kind of entry a status line describes.
package struct StatusEntry: Sendable, Equatable {
    package var path: String
    /// `git_status_t` flags.
    package var flags: UInt32
    package var isUntracked: Bool { flags & GIT_STATUS_WT_NEW.rawValue != 0 }
    package var isIgnored: Bool { flags & GIT_STATUS_IGNORED.rawValue != 0 }
}

extension Repository {
    /// The change from `base`'s tree to the working directory (index considered), including untracked,
    /// non-ignored files with their content, deletions, mode changes and binary files, streamed as one
    /// `git apply --binary`-able patch into `patchFile` (never built in memory). A path whose old or new side is
    /// larger than `maxFileBytes` is skipped before libgit2 reads it and reported in ``WorkingTreeChange/omitted``.
    /// Submodules are not looked into (their own `.git` is not ours to trust). `cancellation` stops the work within one
    /// file: the diff, the hashing and the printing each give up once it is set.
    package func workingTreeChange(
        from base: ObjectID,
        writingPatchTo patchFile: String,
        maxFileBytes: Int64,
        cancellation: CheckoutCancellation? = nil
    ) throws(GitError) -> WorkingTreeChange {
        let tree = try tree(of: base)
        var options = git_diff_options()
        try check(git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION)), "prepare diff")
        options.flags =
            GIT_DIFF_INCLUDE_UNTRACKED.rawValue | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_DIFF_SHOW_UNTRACKED_CONTENT.rawValue | GIT_DIFF_SHOW_BINARY.rawValue | GIT_DIFF_INCLUDE_TYPECHANGE.rawValue
            | GIT_DIFF_IGNORE_SUBMODULES.rawValue
        options.ignore_submodules = GIT_SUBMODULE_IGNORE_ALL
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, handle), "open the object database")
        defer { git_odb_free(odb) }
        let sizes = SizeGate(workdir: workdir ?? "", odb: odb!, limit: maxFileBytes, cancellation: cancellation)
        let gate = Unmanaged.passRetained(sizes)
        defer { gate.release() }
        options.payload = gate.toOpaque()
        options.notify_cb = { _, delta, _, payload in
            guard let delta, let payload else { return 0 }
            return Unmanaged<SizeGate>.fromOpaque(payload).takeUnretainedValue().admit(delta.pointee)
        }
        options.progress_cb = { _, _, _, payload in
            guard let payload else { return 0 }
            return Unmanaged<SizeGate>.fromOpaque(payload).takeUnretainedValue().cancellation?.isCancelled == true ? -1 : 0
        }
        var diff: OpaquePointer?
        try check(git_diff_tree_to_workdir_with_index(&diff, handle, tree.pointer, &options), "diff \(base) against the working tree")
        defer { git_diff_free(diff) }
        let entries = Self.entries(of: diff!)
        let sink = PatchSink(path: patchFile, cancellation: cancellation)
        guard sink.fd >= 0 else {
            throw GitError(code: .failed, operation: "open \(patchFile) for the patch", message: String(cString: strerror(errno)))
        }
        let retained = Unmanaged.passRetained(sink)
        defer {
            retained.release()
            close(sink.fd)
        }
        let rc = git_diff_print(
            diff,
            GIT_DIFF_FORMAT_PATCH,
            { _, _, line, payload in
                guard let line, let payload else { return 0 }
                let sink = Unmanaged<PatchSink>.fromOpaque(payload).takeUnretainedValue()
                return sink.write(line.pointee) ? 0 : -1
            },
            retained.toOpaque()
        )
        if cancellation?.isCancelled == true { throw GitError(code: .failed, operation: "export the patch", message: "stopped: the budget ended") }
        if sink.failed != 0 {
            throw GitError(code: .failed, operation: "write the patch to \(patchFile)", message: String(cString: strerror(sink.failed)))
        }
        try check(rc, "format the patch from \(base)")
        guard fsync(sink.fd) == 0 else {
            throw GitError(code: .failed, operation: "write the patch to \(patchFile)", message: String(cString: strerror(errno)))
        }
        return WorkingTreeChange(entries: entries, omitted: sizes.omitted.sorted { $0.path < $1.path }, patchBytes: sink.written)
    }

    /// Paths changed between two commits' trees.
    package func changedPaths(from old: ObjectID?, to new: ObjectID) throws(GitError) -> [DiffEntry] {
        let newTree = try tree(of: new)
        let oldTree = try old.map { (id) throws(GitError) in try tree(of: id) }
        var options = git_diff_options()
        try check(git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION)), "prepare diff")
        var diff: OpaquePointer?
        try check(
            git_diff_tree_to_tree(&diff, handle, oldTree?.pointer, newTree.pointer, &options),
            "diff \(old?.hex ?? "empty tree") against \(new)"
        )
        defer { git_diff_free(diff) }
        return Self.entries(of: diff!)
    }

    /// Paths touched by the commits in `base..head` (each against its first parent).
    package func pathsChangedByCommits(
        from base: ObjectID,
        to head: ObjectID,
        cancellation: CheckoutCancellation? = nil
    ) throws(GitError) -> Set<String> {
        var paths = Set<String>()
        for commit in try commits(from: base, to: head) {
            if cancellation?.isCancelled == true {
                throw GitError(code: .failed, operation: "list changed paths", message: "stopped: the budget ended")
            }
            for entry in try changedPaths(from: try firstParent(of: commit), to: commit) {
                paths.insert(entry.oldPath)
                paths.insert(entry.newPath)
            }
        }
        return paths
    }

    /// `git status`-like entries (untracked included, ignored excluded).
    package func status() throws(GitError) -> [StatusEntry] {
        var options = git_status_options()
        try check(git_status_options_init(&options, UInt32(GIT_STATUS_OPTIONS_VERSION)), "prepare status")
        options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        options.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED.rawValue | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS.rawValue
        var list: OpaquePointer?
        try check(git_status_list_new(&list, handle, &options), "read the status of \(workdir ?? gitDir)")
        defer { git_status_list_free(list) }
        var entries: [StatusEntry] = []
        for index in 0..<git_status_list_entrycount(list) {
            guard let entry = git_status_byindex(list, index)?.pointee else { continue }
            let delta = entry.index_to_workdir ?? entry.head_to_index
            guard let path = delta?.pointee.new_file.path ?? delta?.pointee.old_file.path else { continue }
            entries.append(StatusEntry(path: String(cString: path), flags: entry.status.rawValue))
        }
        return entries
    }

    private static func entries(of diff: OpaquePointer) -> [DiffEntry] {
        (0..<git_diff_num_deltas(diff)).compactMap { index -> DiffEntry? in
            guard let delta = git_diff_get_delta(diff, index)?.pointee else { return nil }
            let change: DiffEntry.Change =
                switch delta.status {
                case GIT_DELTA_ADDED: .added
                case GIT_DELTA_DELETED: .deleted
                case GIT_DELTA_MODIFIED: .modified
                case GIT_DELTA_RENAMED: .renamed
                case GIT_DELTA_COPIED: .copied
                case GIT_DELTA_TYPECHANGE: .typeChanged
                case GIT_DELTA_UNTRACKED: .untracked
                default: .other
                }
            return DiffEntry(
                change: change,
                oldPath: delta.old_file.path.map { String(cString: $0) } ?? "",
                newPath: delta.new_file.path.map { String(cString: $0) } ?? ""
            )
        }
    }
}

/// Decides per delta, before libgit2 loads any content, whether both sides fit the patch-file limit.
/// Used only on the thread running the diff, which owns it for the call.
private final class SizeGate {
    let workdir: String
    let odb: OpaquePointer
    let limit: Int64
    let cancellation: CheckoutCancellation?
    var omitted: [OmittedPath] = []

    init(workdir: String, odb: OpaquePointer, limit: Int64, cancellation: CheckoutCancellation?) {
        self.workdir = workdir
        self.odb = odb
        self.limit = limit
        self.cancellation = cancellation
    }

    /// 0 takes the delta, 1 skips it (too large), -1 stops the diff (cancelled).
    func admit(_ delta: git_diff_delta) -> Int32 {
        if cancellation?.isCancelled == true { return -1 }
        return fits(delta) ? 0 : 1
    }

    private func fits(_ delta: git_diff_delta) -> Bool {
        var largest: Int64 = 0
        if let path = delta.new_file.path {
            var info = stat()
            if lstat("\(workdir)/\(String(cString: path))", &info) == 0, info.st_mode & S_IFMT == S_IFREG { largest = Int64(info.st_size) }
        }
        var oid = delta.old_file.id
        if !git_oid_is_zero(&oid).isTrue {
            var length = 0
            var type = GIT_OBJECT_INVALID
            if git_odb_read_header(&length, &type, odb, &oid) == 0 { largest = max(largest, Int64(length)) }
        }
        guard largest > limit else { return true }
        let path = delta.new_file.path ?? delta.old_file.path
        omitted.append(OmittedPath(path: path.map { String(cString: $0) } ?? "", bytes: largest))
        return false
    }
}

/// Writes printed patch lines to a file descriptor as `git_diff_to_buf` would lay them out.
private final class PatchSink {
    let fd: Int32
    let cancellation: CheckoutCancellation?
    var written: Int64 = 0
    var failed: Int32 = 0

    init(path: String, cancellation: CheckoutCancellation?) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        self.cancellation = cancellation
    }

    func write(_ line: git_diff_line) -> Bool {
        if cancellation?.isCancelled == true { return false }
        let origin = UInt8(bitPattern: line.origin)
        if [UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: " ")].contains(origin) {
            var byte = origin
            guard put(&byte, 1) else { return false }
        }
        guard let content = line.content else { return true }
        return put(content, line.content_len)
    }

    private func put(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let n = Foundation.write(fd, bytes + offset, count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                failed = errno
                return false
            }
            offset += n
        }
        written += Int64(count)
        return true
    }
}

extension Int32 {
    fileprivate var isTrue: Bool { self != 0 }
}
