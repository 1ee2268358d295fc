import CGit2
import Foundation

/// One changed path of a diff.
public struct DiffEntry: Sendable, Equatable {
    /// What happened to the path.
    public enum Change: String, Sendable {
        case added, deleted, modified, renamed, copied, typeChanged, untracked, other
    }

    public var change: Change
    public var oldPath: String
    public var newPath: String
}

/// The whole change from a base commit to the working tree.
public struct WorkingTreeChange: Sendable {
    /// Per-path entries.
    public var entries: [DiffEntry]
    /// A `git apply --binary`-able patch (git's format, binary hunks included).
    public var patch: Data
}

/// What kind of entry a status line describes.
public struct StatusEntry: Sendable, Equatable {
    public var path: String
    /// `git_status_t` flags.
    public var flags: UInt32
    public var isUntracked: Bool { flags & GIT_STATUS_WT_NEW.rawValue != 0 }
    public var isIgnored: Bool { flags & GIT_STATUS_IGNORED.rawValue != 0 }
}

extension Repository {
    /// The change from `base`'s tree to the working directory (index considered), including untracked,
    /// non-ignored files with their content, deletions, mode changes and binary files.
    public func workingTreeChange(from base: ObjectID) throws(GitError) -> WorkingTreeChange {
        let tree = try tree(of: base)
        var options = git_diff_options()
        try check(git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION)), "prepare diff")
        options.flags = GIT_DIFF_INCLUDE_UNTRACKED.rawValue | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
            | GIT_DIFF_SHOW_UNTRACKED_CONTENT.rawValue | GIT_DIFF_SHOW_BINARY.rawValue | GIT_DIFF_INCLUDE_TYPECHANGE.rawValue
        var diff: OpaquePointer?
        try check(git_diff_tree_to_workdir_with_index(&diff, handle, tree.pointer, &options), "diff \(base) against the working tree")
        defer { git_diff_free(diff) }
        let entries = Self.entries(of: diff!)
        var buffer = git_buf()
        try check(git_diff_to_buf(&buffer, diff, GIT_DIFF_FORMAT_PATCH), "format the patch from \(base)")
        let patch = consume(&buffer) { Data(buffer: $0) }
        return WorkingTreeChange(entries: entries, patch: patch)
    }

    /// Paths changed between two commits' trees.
    public func changedPaths(from old: ObjectID?, to new: ObjectID) throws(GitError) -> [DiffEntry] {
        let newTree = try tree(of: new)
        let oldTree = try old.map { (id) throws(GitError) in try tree(of: id) }
        var options = git_diff_options()
        try check(git_diff_options_init(&options, UInt32(GIT_DIFF_OPTIONS_VERSION)), "prepare diff")
        var diff: OpaquePointer?
        try check(git_diff_tree_to_tree(&diff, handle, oldTree?.pointer, newTree.pointer, &options),
                  "diff \(old?.hex ?? "empty tree") against \(new)")
        defer { git_diff_free(diff) }
        return Self.entries(of: diff!)
    }

    /// Paths touched by the commits in `base..head` (each against its first parent).
    public func pathsChangedByCommits(from base: ObjectID, to head: ObjectID) throws(GitError) -> Set<String> {
        var paths = Set<String>()
        for commit in try commits(from: base, to: head) {
            for entry in try changedPaths(from: try firstParent(of: commit), to: commit) {
                paths.insert(entry.oldPath)
                paths.insert(entry.newPath)
            }
        }
        return paths
    }

    /// `git status`-like entries (untracked included, ignored excluded).
    public func status() throws(GitError) -> [StatusEntry] {
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
                change: change, oldPath: delta.old_file.path.map { String(cString: $0) } ?? "",
                newPath: delta.new_file.path.map { String(cString: $0) } ?? "")
        }
    }
}
