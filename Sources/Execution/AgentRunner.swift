import AgentProcess
import DispatchCore
import Egress
import Foundation
import Logging

/// What the process-running backends (host and local sandbox) share: the runner's configuration, its
/// environment (the base of every agent's) and one process supervisor.
package struct AgentRunner: Sendable {
    /// Paths, budgets and limits.
    package let configuration: DispatchConfiguration
    /// The runner's environment, filtered per agent by ``AgentEnvironment``.
    package let environment: [String: String]
    /// Spawns, waits for and ends processes.
    package let supervisor: ProcessSupervisor
    /// How agents are contained; `bwrap` is the bubblewrap binary when the mode is `.bwrap`.
    package let isolation: (mode: IsolationMode, bwrap: String?)

    /// `dispatch-monitor`, which holds each isolated agent attempt so that it outlives the runner (CONTRACT §7):
    /// set for a runner whose agents do not die with it (`serve`) when isolation is on and the monitor is installed.
    package let monitorProgram: String?

    /// Who agents run as (CONTRACT §7): leased uids and work dir owners for a root runner with isolation, else the
    /// runner itself.
    package let agentUsers: AgentUserPolicy
    /// The uids sandboxed agents are leased, when ``agentUsers`` leases them.
    package let uidLeases: AgentUidLeases?

    /// The egress proxy isolated runs leave through (CONTRACT §10); `nil`: agents have the runner's network
    /// (isolation off).
    package var egress: EgressService?

    /// A runner with its own supervisor. `isolation` comes from ``Bubblewrap/resolve(_:)`` at start-up.
    package init(
        configuration: DispatchConfiguration,
        environment: [String: String],
        isolation: (mode: IsolationMode, bwrap: String?) = (.none, nil),
        supervisor: ProcessSupervisor = ProcessSupervisor()
    ) {
        self.configuration = configuration
        self.environment = environment
        self.isolation = isolation
        self.supervisor = supervisor
        let held = isolation.mode == .bwrap && !configuration.agentsDieWithRunner
        monitorProgram = held ? MonitorSpec.locateProgram(environment: environment) : nil
        (agentUsers, uidLeases) = Self.agentUserPolicy(configuration, isolation: isolation.mode)
    }

    /// A root runner with isolation leases uids from `DISPATCH_AGENT_UIDS` (checked at start-up by
    /// ``checkAgentUsers(_:)``) and runs host-mode agents as their work dir's owner, or `DISPATCH_AGENT_USER` for a
    /// root-owned one; any other runner runs agents as itself.
    package static func agentUserPolicy(_ configuration: DispatchConfiguration, isolation: IsolationMode) -> (AgentUserPolicy, AgentUidLeases?) {
        guard geteuid() == 0, isolation == .bwrap, AgentUser.setpriv != nil, AgentUser.env != nil,
            let range = AgentUidLeases.parseRange(configuration.agentUids)
        else { return (.runner, nil) }
        return (.leased(hostFallback: configuration.agentUser.flatMap(AgentUser.named)), AgentUidLeases(range: range))
    }

    /// Why `DISPATCH_AGENT_UIDS` or `DISPATCH_AGENT_USER` cannot be used, naming the variable; `nil` when they can.
    package static func checkAgentUsers(_ configuration: DispatchConfiguration) -> String? {
        guard let range = AgentUidLeases.parseRange(configuration.agentUids) else {
            return "invalid DISPATCH_AGENT_UIDS \(configuration.agentUids): must be FIRST-LAST, uids from 1 to 4294967294"
        }
        if let name = configuration.agentUser {
            guard let user = AgentUser.named(name) else {
                return "invalid DISPATCH_AGENT_USER \(name): no such user here (a name or a numeric uid)"
            }
            if range.contains(user.uid) {
                return "invalid DISPATCH_AGENT_USER \(name): uid \(user.uid) is one of DISPATCH_AGENT_UIDS, which are leased to sandboxed runs"
            }
        }
        if let setting = configuration.maxRunDiskBytesSetting, (Int64(setting) ?? -1) < 0 {
            return "invalid DISPATCH_MAX_RUN_DISK_BYTES \(setting): must be a whole number of bytes (0 turns the limit off)"
        }
        return nil
    }

    /// Why a root runner with isolation cannot run agents as their own users (`setpriv`, `env --chdir` missing),
    /// naming what to install; `nil` when it can, or when it need not.
    package static func checkAgentUserTools(isolation: IsolationMode) -> String? {
        guard geteuid() == 0, isolation == .bwrap else { return nil }
        guard AgentUser.setpriv != nil, AgentUser.env != nil else {
            return "a root runner runs agents as users of their own with setpriv (util-linux) and env (coreutils): "
                + "\(AgentUser.setpriv == nil ? "setpriv" : "env") was not found in /usr/bin or /bin"
        }
        return nil
    }

    /// The uid a run's agent runs as (CONTRACT §7), when this runner leases them (`nil` when it does not): a new lease,
    /// recorded in `directory` (`agent-uid`, for a runner that adopts the run) and given `owned` (the checkout); or,
    /// `adopting`, the recorded one held again (its monitor holds it meanwhile; a run recorded without one goes on
    /// without one). Blocking: a `/proc` scan, and `owned` walked.
    package func leaseAgentUid(recordIn directory: String, owning owned: [String], requestId: String, adopting: Bool) throws -> AgentUidLease? {
        guard let leases = uidLeases else { return nil }
        let record = "\(directory)/agent-uid"
        if adopting {
            guard let text = try? String(contentsOfFile: record, encoding: .utf8) else { return nil }
            guard let uid = UInt32(text.trimmingCharacters(in: .whitespacesAndNewlines)), let lease = leases.adopt(uid, for: requestId) else {
                throw AgentProcessError(
                    code: .spawnFailed,
                    message: "cannot hold the agent uid recorded in \(record) again: its lease ended and may belong to another run now"
                )
            }
            return lease
        }
        let lease = try leases.lease(for: requestId)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try AgentHome.writeAtomically(Data("\(lease.uid)\n".utf8), to: record)
        for path in owned { try lease.user.own(path) }
        return lease
    }

    /// Who a host-mode agent in `workDir` runs as: the work dir's owner; for a root-owned one, `DISPATCH_AGENT_USER`
    /// (`nil`: as root, the operator's explicit opt-out), else a refusal naming the fix. `nil` also for a runner
    /// whose agents run as itself.
    package func hostUser(workDir: String) -> Result<AgentUser?, DispatchFailure> {
        guard case .leased(let fallback) = agentUsers else { return .success(nil) }
        let real = Self.realPath(workDir)
        guard let owner = AgentUser.owner(of: real) else { return .failure(.message("cannot read the owner of the work dir \(real)")) }
        if let leases = uidLeases, leases.range.contains(owner.uid) {
            return .failure(
                .message(
                    "the work dir \(real) is owned by uid \(owner.uid), one of DISPATCH_AGENT_UIDS (\(configuration.agentUids)), which are leased to sandboxed runs: give it to a user outside that range"
                )
            )
        }
        if owner.uid != 0 { return .success(owner) }
        guard let fallback else {
            return .failure(
                .message(
                    "the work dir \(real) is owned by root and agents never run as root: give it to the user the agent should run as, or set DISPATCH_AGENT_USER to that user"
                )
            )
        }
        if let leases = uidLeases, leases.range.contains(fallback.uid) {
            return .failure(.message("DISPATCH_AGENT_USER names uid \(fallback.uid), one of DISPATCH_AGENT_UIDS, which are leased to sandboxed runs"))
        }
        return .success(fallback.uid == 0 ? nil : fallback)
    }

    /// Whether a run this runner starts outlives it: its agent attempts are held by monitors.
    package var runsOutliveRunner: Bool { monitorProgram != nil }

    /// The runner's own places an agent must not see: the state dir, the inbox, the sandbox root, the in-cluster
    /// service account, and every file the runner reads a secret from. Absolute and with symlinks resolved, as the
    /// kernel will see them (a relative path would hide the wrong thing).
    var hiddenParts: (directories: [String], files: [String]) {
        // The agent home's CLI state: its logins are copied into each run's own home, and its transcripts and hooks
        // are no run's business (unless the operator shares a path on purpose through DISPATCH_AGENT_RW_PATHS).
        let shared = configuration.agentWritablePaths.map(Self.realPath)
        func unshared(_ path: String) -> Bool { !Self.isInside(Self.realPath(path), shared) }
        let cliDirectories = [".codex", ".claude", ".pi"].map { "\(agentHomeSource)/\($0)" }.filter(unshared)
        let cliFiles = ["\(agentHomeSource)/.claude.json"].filter(unshared)
        let directories =
            [configuration.stateDir, configuration.inboxDir, configuration.sandboxRoot, Self.serviceAccountDirectory]
            + Self.spawnerDirectories + cliDirectories
        let files =
            [configuration.tokenFile, configuration.kubeconfig].compactMap { $0 }.flatMap { $0.split(separator: ":").map(String.init) }
            + configuration.secretFiles + Self.spawnerSockets + cliFiles
        let real = directories.map(Self.realPath)
        // A path inside another hidden directory is hidden with it; mounting it too would leave its name behind.
        func inside(_ path: String) -> Bool { real.contains { $0 != path && path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") } }
        return (Array(Set(real.filter { !inside($0) })).sorted(), files.map(Self.realPath).filter { !inside($0) })
    }

    /// Why an agent may not run in `cwd` (the request's, else the default work dir): it lies inside a part of the
    /// runner that agents must not see (CONTRACT §7) — binding it for the agent would show it that part. `nil` when
    /// it may. Symlinks are resolved on both sides, so a link into the state dir is refused too.
    package func workDirRefusal(_ request: DispatchRequest) -> RequestValidationError? {
        let cwd = Self.realPath(request.cwd ?? configuration.defaultWorkdir)
        let hidden = hiddenParts
        guard let place = (hidden.directories + hidden.files).first(where: { Self.isInside(cwd, [$0]) }) else { return nil }
        let what = request.cwd == nil ? "the default work dir \(cwd)" : cwd
        return RequestValidationError(field: "cwd", message: "\(what) lies inside \(place), which agents must not see")
    }

    /// Sockets of services that start processes outside the agent's namespace on request (a container engine, the
    /// system bus and systemd): through one, an agent could leave something running after its dispatch, or run
    /// as the machine's root. Hidden where they exist.
    static let spawnerSockets = [
        "/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock", "/run/dbus/system_bus_socket",
        "/run/systemd/private",
    ]

    /// The per-user runtime directories (the user's systemd and D-Bus sockets: `systemd-run --user` would start a
    /// process that outlives the dispatch).
    static let spawnerDirectories = ["/run/user"]

    /// Where a pod's service-account token is mounted (the runner reads it in-cluster).
    static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// `path` made absolute against the runner's directory, with symlinks resolved.
    static func realPath(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }

    /// The home of a run of `tool` whose files are kept in `directory` (its sandbox, or its host-mode run directory).
    package func home(in directory: String, tool: AgentTool, owner: AgentUser? = nil) -> AgentHome {
        var home = AgentHome(path: "\(directory)/home", source: agentHomeSource, tool: tool)
        home.owner = owner
        return home
    }

    /// Where runs' homes copy logins from (`DISPATCH_AGENT_HOME`, else the runner's `HOME`).
    var agentHomeSource: String { configuration.agentHome ?? environment["HOME"] ?? NSHomeDirectory() }

    /// The agent program's places that lie inside a hidden directory (Claude Code in `~/.claude/local`): bound back
    /// read-only on top, so the program runs while the rest of that directory stays hidden.
    func programPlacesInside(_ hidden: [String], executable: String?) -> [String] {
        (executable.map(Self.executablePlaces) ?? []).map(Self.realPath).filter { place in
            Self.isInside(place, hidden) && !hidden.contains(place)
        }
    }

    /// Whether `path` is one of `directories` or lies inside one.
    static func isInside(_ path: String, _ directories: [String]) -> Bool {
        directories.contains { path == $0 || path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
    }

    /// Where an agent's program lives: the directory of its real path (symlinks resolved) and that directory's
    /// parent, where a script's package (a node module, the fake agents' `fake_agent.py`) keeps the rest of itself.
    static func executablePlaces(_ executable: String) -> [String] {
        let real = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        return [executable, real.path, real.deletingLastPathComponent().path].filter { $0 != "/" }
    }

    /// Host mode: the filesystem as the runner sees it, minus its own parts, with the run's own `home` (under the
    /// hidden state dir) bound back; `readOnlyWorkDir` for the `read-only` profile.
    package func hostIsolation(
        workDir: String,
        readOnlyWorkDir: Bool,
        home: String? = nil,
        executable: String? = nil,
        user: AgentUser? = nil,
        network: NetworkBridge? = nil
    ) -> (bwrap: String, view: IsolationView)? {
        guard isolation.mode == .bwrap, let bwrap = isolation.bwrap else { return nil }
        let hidden = hiddenParts
        var view = IsolationView(
            readOnlyRoot: false,
            hiddenDirectories: hidden.directories,
            hiddenFiles: hidden.files,
            // An agent user's own work dir is bound back too: a directory above it (or above the run's home) that the
            // user may not pass becomes a tmpfs, and the work dir must come through it.
            boundBack: (home.map { [Self.realPath($0)] } ?? []) + (user == nil ? [] : [Self.realPath(workDir)]),
            readOnly: (readOnlyWorkDir ? [Self.realPath(workDir)] : []) + programPlacesInside(hidden.directories, executable: executable)
        )
        view.user = user
        view.network = network
        return (bwrap, view)
    }

    /// Sandbox mode: everything read-only but the agent's own checkout and its run's own home (bound back at their
    /// own paths after the sandbox root is hidden), a private `/tmp` and `DISPATCH_AGENT_RW_PATHS` — never the
    /// operator's home, where every run's transcripts would meet; `.sandbox.env` read-only on top. Whatever is bound
    /// is bound before the runner's parts are hidden, so a bind of a parent (`~/.local` holding the program and the
    /// state dir) cannot bring them back.
    package func sandboxIsolation(
        checkout: String,
        sandboxEnvFile: String,
        hostCheckout: String,
        executable: String?,
        readOnlyCheckout: Bool,
        home: String? = nil,
        user: AgentUser? = nil,
        network: NetworkBridge? = nil
    ) -> (bwrap: String, view: IsolationView)? {
        guard isolation.mode == .bwrap, let bwrap = isolation.bwrap else { return nil }
        let hidden = hiddenParts
        let checkout = Self.realPath(checkout)
        let writable = configuration.agentWritablePaths.map(Self.realPath)
        // The program's places inside a writable path stay writable (Claude Code in `~/.claude/local` updates itself);
        // among the rest the most specific bind wins, so the host checkout inside a writable path stays read-only.
        let programPlaces = (executable.map(Self.executablePlaces) ?? []).map(Self.realPath).filter { place in
            !writable.contains { place == $0 || place.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
        }
        var view = IsolationView(
            readOnlyRoot: true,
            privateTmp: true,
            visible: [Self.realPath(hostCheckout)] + programPlaces.filter { place in !Self.isInside(place, hidden.directories) },
            writable: writable,
            hiddenDirectories: hidden.directories,
            hiddenFiles: hidden.files,
            boundBack: (readOnlyCheckout ? [] : [checkout]) + (home.map { [Self.realPath($0)] } ?? []),
            readOnly: (readOnlyCheckout ? [checkout] : []) + [Self.realPath(sandboxEnvFile)]
                + programPlacesInside(hidden.directories, executable: executable)
        )
        view.user = user
        view.network = network
        return (bwrap, view)
    }

    /// Runs the agent attempts, recording `running` with each attempt's log paths (through `context.progress`)
    /// before it starts.
    @inline(never)
    package func runAgentPhase(_ input: AgentPhase.Input, context: BackendContext, result: DispatchResult) async -> AgentPhase.Outcome {
        let starting = recordingAttempts(context, result: result)
        guard let watch = diskWatch(input, context: context) else {
            return await phase(context).run(input, token: context.cancellation, attemptStarting: starting)
        }
        let phase = phase(context)
        return await watch.watching { await phase.run(input, token: watch.token, attemptStarting: starting) } ?? AgentPhase.Outcome(status: .failed)
    }

    /// The run's disk limit over `input`'s places, under the run's own cancellation; `nil` when it has none.
    @inline(never)
    func diskWatch(_ input: AgentPhase.Input, context: BackendContext) -> RunDiskWatch? {
        RunDiskWatch(places: input.diskPlaces, limitBytes: configuration.maxRunDiskBytes, uid: input.agentUid, outer: context.cancellation)
    }

    /// Adopts the agent phase a previous runner left (the attempt `context.known` names, held by its monitor) and
    /// runs it to its end. `nil`: nothing to adopt (the monitor is gone without a record).
    @inline(never)
    package func resumeAgentPhase(_ input: AgentPhase.Input, context: BackendContext, result: DispatchResult) async -> AgentPhase.Outcome? {
        let starting = recordingAttempts(context, result: result)
        let known = context.known
        guard let watch = diskWatch(input, context: context) else {
            return await phase(context).resume(input, known: known, token: context.cancellation, attemptStarting: starting)
        }
        let phase = phase(context)
        return await watch.watching { await phase.resume(input, known: known, token: watch.token, attemptStarting: starting) }
    }

    /// The agent phase of one run.
    @inline(never)
    func phase(_ context: BackendContext) -> AgentPhase {
        AgentPhase(
            configuration: configuration,
            baseEnvironment: environment,
            supervisor: supervisor,
            logger: context.logger,
            monitorProgram: monitorProgram
        )
    }

    /// Records `running` with the next attempt's log paths before it starts.
    @inline(never)
    func recordingAttempts(_ context: BackendContext, result: DispatchResult) -> @Sendable (LogInfo, [AttemptRecord]) async -> Void {
        { logs, attempts in
            var running = result
            running.logs = logs
            running.attempts = attempts
            running.usage = AgentUsage.sum(attempts.compactMap(\.usage))
            running.updatedAt = ISO8601.string(Date())
            // In a task of its own: the write is the deepest moment of the run's task, which lives as long as the agent.
            let written = running
            await inChildTask { await context.progress(written) }
        }
    }

    /// Why a run whose runner died is ended without its result (CONTRACT §7).
    package static let abandonedReason = "runner restarted while running; execution abandoned"

    /// Whether this runner can adopt a run a dead runner left: the run's files are its own (under its state dir or
    /// sandbox root: a peer replica on the same machine, with a state dir of its own, leaves it to its monitor and
    /// a `serve` on that state dir) and ``canAdopt(_:)`` holds.
    package func canAdoptHere(_ known: DispatchResult) -> Bool {
        guard let path = known.logs?.stdoutPath else { return false }
        let own = [configuration.stateDir, configuration.sandboxRoot].contains { path.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
        return own && Self.canAdopt(known)
    }

    /// Whether a run a dead runner left can be adopted: its last attempt's monitor lives, or recorded how the agent
    /// ended (and did not end it as lost).
    package static func canAdopt(_ known: DispatchResult) -> Bool {
        switch AgentPhase.monitorState(of: known) {
        case .alive: true
        case .ended(_, let ended): ended.ending != "runnerLost"
        case .gone, .none: false
        }
    }

    /// Marks the attempt `result` names as ended lost, so that a monitor that had not recorded itself yet when the run
    /// was given up does not start (or go on with) the agent.
    package static func markAbandoned(_ result: DispatchResult) {
        guard let logs = result.logs, let record = MonitorRecord(stdoutPath: logs.stdoutPath) else { return }
        record.abandon()
    }

    /// Ends every process still carrying the request's marker (a run whose runner died).
    package func endMarked(_ requestId: String) async -> Int {
        await supervisor.endLeftovers(groupId: nil, marker: AgentEnvironment.marker(requestId: requestId), grace: .milliseconds(200))
    }
}

extension DispatchResult {
    /// Copies the agent phase's outcome into the result.
    package mutating func apply(_ outcome: AgentPhase.Outcome) {
        attempts = outcome.attempts
        usage = AgentUsage.sum(outcome.attempts.compactMap(\.usage))
        if let logs = outcome.logs { self.logs = logs }
        if outcome.status == .completed {
            status = .completed
            error = nil
            failure = nil
            setResultText(outcome.finalText ?? "")
        } else {
            status = outcome.status
            failure = outcome.failure
            error = outcome.failure?.description
        }
    }
}
