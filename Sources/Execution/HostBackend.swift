import AgentProcess
import DispatchCore
import Egress
import Foundation

/// Host mode: the agent runs in the request's `cwd` itself, its logs under `<state>/runs/<requestId>/`.
package struct HostBackend: ExecutionBackend {
    let runner: AgentRunner

    /// A host backend over `runner`.
    package init(runner: AgentRunner) {
        self.runner = runner
    }

    /// Runs the attempts in the work dir. What the agent left behind (an orphan holding stderr) is ended only
    /// once the result is stored: the result never waits for it.
    package func run(_ context: BackendContext) async -> BackendOutcome {
        await run(context, adopting: false)
    }

    /// A `cwd` inside the runner's hidden parts, or a `network` this runner cannot honour, is refused before anything
    /// is recorded.
    package func refusal(of request: DispatchRequest) -> RequestValidationError? {
        runner.workDirRefusal(request) ?? runner.networkRefusal(request)
    }

    /// A run a dead runner left is adopted when its attempt's monitor lives or recorded the agent's end.
    package func canAttach(_ known: DispatchResult) -> Bool { runner.canAdoptHere(known) }

    /// Adopts the attempt a dead runner left from its monitor, and ends the run as this runner would have.
    package func attach(_ context: BackendContext) async -> BackendOutcome {
        await run(context, adopting: true)
    }

    /// What a run needs once it may start: the agent phase's input, its home and its uid lease.
    struct Prepared {
        var input: AgentPhase.Input
        var home: AgentHome
        var lease: AgentUidLease?
        /// The run's way out (isolation on).
        var egress: EgressAttachment?
    }

    /// The run. Kept small on purpose: its frame lives as long as the agent does (a held run costs what its waiting
    /// frames cost), so what comes before and after the agent phase is in helpers of their own.
    func run(_ context: BackendContext, adopting: Bool) async -> BackendOutcome {
        let prepared: Prepared
        switch await start(context, adopting: adopting) {
        case .failure(let ended): return ended.outcome
        case .success(let ready): prepared = ready
        }
        let outcome: AgentPhase.Outcome
        if adopting {
            guard let adopted = await runner.resumeAgentPhase(prepared.input, context: context, result: context.known) else {
                return await lost(context, egress: prepared.egress)
            }
            outcome = adopted
        } else {
            outcome = await runner.runAgentPhase(prepared.input, context: context, result: context.known)
        }
        return await ended(outcome, prepared: prepared, context: context)
    }

    /// The run's way out opened and its phase prepared; or the run's end (out of line: see ``run(_:adopting:)``).
    @inline(never)
    func start(_ context: BackendContext, adopting: Bool) async -> Result<Prepared, Refused> {
        let egress: EgressAttachment?
        switch await runner.openEgress(context) {
        case .failure(let failure) where adopting:
            // The attempt its monitor holds would run on without a way out: ended, as a run that cannot be adopted.
            var result = context.known
            result.fail(failure)
            let (salvaged, killed) = await salvage(result)
            return .failure(Refused(outcome: .ended(salvaged, processesKilled: killed)))
        case .failure(let failure): return .failure(Refused(outcome: Self.refused(context, failure)))
        case .success(let opened): egress = opened
        }
        switch prepare(context, adopting: adopting, network: egress?.bridge) {
        case .failure(let ended):
            _ = await egress?.close()
            return .failure(ended)
        case .success(var prepared):
            prepared.egress = egress
            if let egress { prepared.input.extraEnv.merge(egress.agentEnvironment) { $1 } }
            return .success(prepared)
        }
    }

    /// A run that cannot start, ended with `failure`.
    @inline(never)
    static func refused(_ context: BackendContext, _ failure: DispatchFailure) -> BackendOutcome {
        var result = context.known
        result.fail(failure)
        return .ended(result)
    }

    /// A run that cannot start, as the backend's outcome.
    struct Refused: Error {
        var outcome: BackendOutcome
    }

    /// The work dir checked, the agent's user chosen, its home and phase input made; or the run's end.
    @inline(never)
    func prepare(_ context: BackendContext, adopting: Bool, network: NetworkBridge?) -> Result<Prepared, Refused> {
        let request = context.request
        var result = context.known
        let workDir = request.cwd ?? runner.configuration.defaultWorkdir
        if let problem = workDirProblem(request, workDir: workDir) {
            result.fail(.message(problem))
            return .failure(Refused(outcome: .ended(result)))
        }
        let lease: AgentUidLease?
        let user: AgentUser?
        switch agentUser(request, workDir: workDir, adopting: adopting) {
        case .success(let chosen): (user, lease) = chosen
        case .failure(let refusal):
            result.fail(refusal)
            return .failure(Refused(outcome: .ended(result)))
        }
        let home = runner.home(in: runDirectory(request.requestId), tool: request.tool, owner: user)
        let input = phaseInput(context, workDir: workDir, home: home, user: user, lease: lease, network: network)
        return .success(Prepared(input: input, home: home, lease: lease))
    }

    /// An adopted run whose monitor is gone: lost, what it left ended.
    @inline(never)
    func lost(_ context: BackendContext, egress: EgressAttachment?) async -> BackendOutcome {
        _ = await egress?.close()
        var result = context.known
        result.failLost(AgentRunner.abandonedReason, request: context.request)
        let (salvaged, killed) = await salvage(result)
        return .ended(salvaged, processesKilled: killed)
    }

    /// The run's outcome once its agent phase ended; what the agent left is ended after the result is stored.
    @inline(never)
    func ended(_ outcome: AgentPhase.Outcome, prepared: Prepared, context: BackendContext) async -> BackendOutcome {
        let egress = prepared.egress
        var result = context.known
        // Handed off: the attempt runs on under its monitor, its home and uid with it, for the next runner (which
        // listens on the run's socket again).
        if outcome.wasLetGo {
            await egress?.handOff()
            return .letGo(result)
        }
        result.apply(outcome)
        // Before the leftovers are ended: what the agent left has no way out any more.
        await egress?.finish(&result)
        let (home, lease) = (prepared.home, prepared.lease)
        let supervisor = runner.supervisor
        let killed = outcome.processesKilled
        guard let group = outcome.pendingSweep else {
            home.writeBack()
            lease?.release()
            return .ended(result, processesKilled: killed)
        }
        let marker = AgentEnvironment.marker(requestId: context.request.requestId)
        let cgroup = outcome.pendingCgroup
        let isolatedExit = outcome.pendingIsolatedExit
        return .ended(
            result,
            processesKilled: killed,
            afterRecording: {
                let killed = await supervisor.endLeftovers(
                    groupId: group,
                    marker: marker,
                    grace: supervisor.leftoverGrace,
                    cgroup: cgroup,
                    isolatedExit: isolatedExit
                )
                // Once nothing of the run is left to write to its home.
                home.writeBack()
                lease?.release()
                return killed
            }
        )
    }

    /// The agent phase of a host-mode run in `workDir` as `user`, its logs, home and disk limit in its run directory.
    @inline(never)
    func phaseInput(
        _ context: BackendContext,
        workDir: String,
        home: AgentHome,
        user: AgentUser?,
        lease: AgentUidLease?,
        network: NetworkBridge?
    ) -> AgentPhase.Input {
        let request = context.request
        // A canary on a leased uid runs in its run's home: its script is the runner's own and uses no work dir, and the
        // request's may be one the uid cannot enter (a root-owned 0700 directory).
        let workDir = lease == nil ? workDir : home.path
        var input = AgentPhase.Input(
            request: request,
            task: request.task,
            workDir: workDir,
            logsDir: runDirectory(request.requestId),
            extraEnv: [:],
            deadline: context.deadline,
            budgetMs: context.deadline.budgetMs
        )
        input.sweepAfterResult = true
        input.diskPlaces = [runDirectory(request.requestId)]
        input.uidLease = lease?.path
        // Only a leased uid is the run's alone: a work dir owner's other processes are not this run's.
        input.agentUid = lease?.uid
        input.home = home
        let runner = self.runner
        let readOnly = request.sandbox == .readOnly
        input.isolation = { executable in
            runner.hostIsolation(workDir: workDir, readOnlyWorkDir: readOnly, home: home.path, executable: executable, user: user, network: network)
        }
        return input
    }

    /// Who the agent runs as (CONTRACT §7): the work dir's owner (``AgentRunner/hostUser(workDir:)``); a canary, whose
    /// script is the runner's own and touches no file of the work dir, on a leased uid, like a sandboxed agent.
    @inline(never)
    func agentUser(_ request: DispatchRequest, workDir: String, adopting: Bool) -> Result<(AgentUser?, AgentUidLease?), DispatchFailure> {
        guard request.tool == .canary, runner.uidLeases != nil else { return runner.hostUser(workDir: workDir).map { ($0, nil) } }
        do {
            let lease = try runner.leaseAgentUid(
                recordIn: runDirectory(request.requestId),
                owning: [],
                requestId: request.requestId,
                adopting: adopting
            )
            return .success((lease?.user, lease))
        } catch {
            return .failure(.message("cannot run the agent as an unprivileged uid: \(error)"))
        }
    }

    /// Why the agent cannot run in `workDir`: missing, or — checked again at the start, since a queued request's work
    /// dir may have been replaced by a link into the runner's parts after its admission (or admitted by a replica
    /// with other hidden parts) — inside what agents must not see.
    @inline(never)
    func workDirProblem(_ request: DispatchRequest, workDir: String) -> String? {
        if let refusal = runner.workDirRefusal(request) { return refusal.description }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: workDir, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "working directory \(workDir) does not exist or is not a directory"
        }
        return nil
    }

    /// Ends the processes a dead runner's agent left.
    @inline(never)
    package func salvage(_ result: DispatchResult) async -> (result: DispatchResult, processesKilled: Int) {
        AgentRunner.markAbandoned(result)
        return (result, await runner.endMarked(result.requestId))
    }

    /// Where a host-mode request keeps its logs and task file.
    func runDirectory(_ requestId: String) -> String { "\(runner.configuration.stateDir)/runs/\(requestId)" }
}
