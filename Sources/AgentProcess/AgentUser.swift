import Foundation

/// The unprivileged user an isolated agent runs as when the runner is root (CONTRACT §7): a uid leased for its run
/// (sandbox mode) or the owner of its work dir (host mode). The namespace's init stays root for as long as it takes
/// `setpriv` to switch; nothing of the agent runs before that.
package struct AgentUser: Sendable, Equatable, Codable {
    /// The uid the agent runs as (never 0 unless the operator opted out, `DISPATCH_AGENT_USER=root`).
    package var uid: UInt32
    /// Its gid.
    package var gid: UInt32
    /// Whether the user has an account here whose supplementary groups it keeps (a host-mode work dir owner); a
    /// leased uid has none and keeps no group.
    package var hasAccount: Bool

    package init(uid: UInt32, gid: UInt32, hasAccount: Bool = false) {
        self.uid = uid
        self.gid = gid
        self.hasAccount = hasAccount
    }

    /// `setpriv` in front of the command: the user's uid and gid, no capability left in any set (the bounding set
    /// too, so no file capability brings one back) and `no_new_privs` (no setuid binary either); then `env --chdir`
    /// enters `directory` as the user — never bwrap as root, which would follow a link the agent planted there into a
    /// directory the user may not pass.
    func switchArguments(setpriv: String, env: String, directory: String) -> [String] {
        [
            setpriv, "--reuid=\(uid)", "--regid=\(gid)", hasAccount ? "--init-groups" : "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--", env, "--chdir=\(directory)", "--",
        ]
    }

    /// The capabilities the namespace keeps until `setpriv` has switched: changing uid and gid and dropping the
    /// bounding set. Nothing that passes permissions: the namespace's init starts in `/`.
    static let switchCapabilities = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]

    /// `env` (coreutils, with `--chdir`), where it is.
    package static let env = ExecutableLocator.locate("env", searchPath: "/usr/bin:/bin")

    /// `setpriv` (util-linux), where it is.
    package static let setpriv = ExecutableLocator.locate("setpriv", searchPath: "/usr/bin:/bin:/usr/sbin:/sbin")

    /// The owner of `path` as an agent user (its account's primary group when it has one, else the file's group);
    /// `nil` when `path` cannot be read.
    package static func owner(of path: String) -> AgentUser? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        if let account = getpwuid(info.st_uid) {
            return AgentUser(uid: info.st_uid, gid: account.pointee.pw_gid, hasAccount: true)
        }
        return AgentUser(uid: info.st_uid, gid: info.st_gid)
    }

    /// The user `DISPATCH_AGENT_USER` names: an account name or a numeric uid; `nil` when there is no such account
    /// (a numeric uid without one runs with that number as its gid).
    package static func named(_ name: String) -> AgentUser? {
        if let account = getpwnam(name) {
            return AgentUser(uid: account.pointee.pw_uid, gid: account.pointee.pw_gid, hasAccount: true)
        }
        guard let uid = UInt32(name) else { return nil }
        if let account = getpwuid(uid) { return AgentUser(uid: uid, gid: account.pointee.pw_gid, hasAccount: true) }
        return AgentUser(uid: uid, gid: uid)
    }

    /// Gives `path` and everything below it (never following a link) to this user.
    package func own(_ path: String) throws(AgentProcessError) {
        guard lchown(path, uid, gid) == 0 else {
            throw AgentProcessError(code: .spawnFailed, message: "cannot give \(path) to uid \(uid): \(errnoText())", errno: errno)
        }
        guard let walker = FileManager.default.enumerator(atPath: path) else { return }
        while let relative = walker.nextObject() as? String {
            let child = "\(path)/\(relative)"
            guard lchown(child, uid, gid) == 0 else {
                throw AgentProcessError(code: .spawnFailed, message: "cannot give \(child) to uid \(uid): \(errnoText())", errno: errno)
            }
        }
    }
}

/// What `agentUser` reports (CONTRACT §7): how this runner picks the user its agents run as.
package enum AgentUserPolicy: Sendable, Equatable {
    /// A root runner with isolation: sandboxed agents on leased uids, host-mode agents as their work dir's owner
    /// (a root-owned one refused unless `hostFallback` names who to run as).
    case leased(hostFallback: AgentUser?)
    /// Agents run as the runner (a runner that is not root, or isolation `none`).
    case runner

    /// `leased`, `root-unsafe` (the operator opted into root for root-owned work dirs) or `runner`: `GET /`'s
    /// `agentUser`.
    package var report: String {
        switch self {
        case .leased(let fallback): fallback?.uid == 0 ? "root-unsafe" : "leased"
        case .runner: "runner"
        }
    }

    /// Who runs agents in each mode: sandbox `leased` or `runner`; host `workdir-owner`, `root-unsafe` (root for a
    /// root-owned work dir) or `runner` — `GET /`'s and `dispatch doctor`'s `agentUsers`.
    package var byMode: [String: String] {
        switch self {
        case .leased(let fallback): ["sandbox": "leased", "host": fallback?.uid == 0 ? "root-unsafe" : "workdir-owner"]
        case .runner: ["sandbox": "runner", "host": "runner"]
        }
    }
}
