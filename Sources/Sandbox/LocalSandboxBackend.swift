import AgentProcess
import DispatchCore
import DispatchStore
import Egress
import Execution
import Foundation
import Git
import Logging
import Tracing

/// Sandbox mode, local backend: a clean checkout at `baseSha` → agent → verification → artifacts, in one budget.
package struct LocalSandboxBackend: ExecutionBackend {
    let runner: AgentRunner
    let ledger: any SandboxLedger
    /// Ready checkouts (`DISPATCH_WARM_SANDBOXES`), under `serve`.
    package let pool: WarmPool?

    /// A local sandbox backend over `runner`, recording its sandboxes in `ledger`, taking checkouts from `pool`.
    package init(runner: AgentRunner, ledger: any SandboxLedger, pool: WarmPool? = nil) {
        self.runner = runner
        self.ledger = ledger
        self.pool = pool
    }

    var configuration: DispatchConfiguration { runner.configuration }

    /// Budget kept back from the agent for artifact export: a tenth of the budget, at most 30 s, and only when
    /// the agent would still get at least its minimum attempt time.
    static func artifactReserveMs(budgetMs: Int) -> Int {
        let reserve = min(budgetMs / 10, 30_000)
        return budgetMs - reserve >= AgentPhase.minimumAttemptMs ? reserve : 0
    }

    /// Export gets at least this long even when the agent used up the budget (partial work is evidence).
    static let minimumExportMs = 1000

    /// Checkout, agent, verification and export; the sandbox's registry row follows the result's status.
    package func run(_ context: BackendContext) async -> BackendOutcome {
        switch await checkedOut(context) {
        case .failure(let ended): return ended.outcome
        case .success(let (sandbox, result)): return await run(in: sandbox, context: context, result: result, adopting: false)
        }
    }

    /// The run's sandbox, checked out and recorded as `running` with it; or the run's end.
    @inline(never)
    func checkedOut(_ context: BackendContext) async -> Result<(LocalSandbox, DispatchResult), Refused> {
        var result = context.known
        let sandbox: LocalSandbox
        switch await makeSandbox(context, result: &result) {
        case .some(let made): sandbox = made
        case .none: return .failure(Refused(outcome: .ended(result)))
        }
        result.localSandbox = sandbox.info()
        // Handed off during the checkout: no agent was started; the next runner ends the run as lost.
        if context.cancellation.isDetached { return .failure(Refused(outcome: .letGo(result))) }
        var running = result
        running.updatedAt = ISO8601.string(Date())
        await context.progress(running)
        return .success((sandbox, result))
    }

    /// A `cwd` inside the runner's hidden parts, or a `network` this runner cannot honour, is refused before anything
    /// is recorded.
    package func refusal(of request: DispatchRequest) -> RequestValidationError? {
        runner.workDirRefusal(request) ?? runner.networkRefusal(request)
    }

    /// The warm pool's removals and refills.
    package func background() async { await pool?.run() }

    /// A run a dead runner left is adopted when its attempt's monitor lives or recorded the agent's end.
    package func canAttach(_ known: DispatchResult) -> Bool { known.localSandbox != nil && runner.canAdoptHere(known) }

    /// Adopts the attempt a dead runner left from its monitor, then verifies and exports as this runner would have
    /// (a verification the dead runner had started is ended and run again: it checks, it does not change).
    package func attach(_ context: BackendContext) async -> BackendOutcome {
        var result = context.known
        guard let info = result.localSandbox else {
            result.failLost(AgentRunner.abandonedReason, request: context.request)
            return .ended(result)
        }
        let sandbox = LocalSandbox(adopting: info, request: context.request, defaultCwd: configuration.defaultWorkdir)
        return await run(in: sandbox, context: context, result: result, adopting: true)
    }

    /// Agent, verification and export in a checked-out sandbox (`adopting`: from the attempt a dead runner left).
    /// Kept small on purpose: its frame lives as long as the agent does (a held run costs what its waiting frames
    /// cost), so what comes before and after the agent phase is in helpers of their own.
    @inline(never)
    func run(in sandbox: LocalSandbox, context: BackendContext, result: DispatchResult, adopting: Bool) async -> BackendOutcome {
        let egress: EgressAttachment?
        switch await runner.openEgress(context, repository: sandbox.sourceRepo) {
        case .failure(let failure) where adopting:
            // The attempt its monitor holds would run on without a way out: ended and exported, as a lost run is.
            var failed = result
            failed.fail(failure)
            let (salvaged, killed) = await salvage(failed)
            return .ended(salvaged, processesKilled: killed)
        case .failure(let failure): return await refused(failure, sandbox: sandbox, context: context, result: result)
        case .success(let opened): egress = opened
        }
        let prepared: Prepared
        switch await prepare(sandbox, context: context, result: result, adopting: adopting, egress: egress) {
        case .failure(let ended):
            _ = await egress?.close()
            return ended.outcome
        case .success(let ready): prepared = ready
        }
        // Whichever way the run goes on (salvaged, let go of, ended), its uid is let go of when it returns.
        defer { prepared.lease?.release() }
        let outcome: AgentPhase.Outcome
        if adopting {
            guard let adopted = await runner.resumeAgentPhase(prepared.input, context: context, result: result) else {
                _ = await egress?.close()
                return await lost(result, context: context)
            }
            outcome = adopted
        } else {
            outcome = await runner.runAgentPhase(prepared.input, context: context, result: result)
        }
        return await afterAgent(outcome, in: sandbox, prepared: prepared, context: context, result: result, adopting: adopting)
    }

    /// What a sandbox run needs once its agent may start: the phase's input, the uid lease, the agent's user and home.
    struct Prepared {
        var input: AgentPhase.Input
        var lease: AgentUidLease?
        var user: AgentUser?
        var home: AgentHome
        var workDeadline: Deadline
        /// The run's way out (isolation on), for its agent and its verification.
        var egress: EgressAttachment?
    }

    /// A sandbox run whose egress could not be opened: failed before its agent, its checkout exported as it is.
    @inline(never)
    func refused(_ failure: DispatchFailure, sandbox: LocalSandbox, context: BackendContext, result: DispatchResult) async -> BackendOutcome {
        var result = result
        result.fail(failure)
        await finishLedger(context.request.requestId, result: &result)
        return .ended(result)
    }

    /// A run that cannot start, as the backend's outcome.
    struct Refused: Error {
        var outcome: BackendOutcome
    }

    /// The agent's uid leased, its home and phase input made; or the run's end.
    @inline(never)
    func prepare(
        _ sandbox: LocalSandbox,
        context: BackendContext,
        result: DispatchResult,
        adopting: Bool,
        egress: EgressAttachment?
    ) async -> Result<Prepared, Refused> {
        var result = result
        let deadline = context.deadline
        let workDeadline = Deadline(budgetMs: deadline.budgetMs - Self.artifactReserveMs(budgetMs: deadline.budgetMs), start: deadline.start)
        var input = AgentPhase.Input(
            request: context.request,
            task: sandbox.task(wrapping: context.request.task),
            workDir: sandbox.workDir,
            logsDir: sandbox.logsDir,
            extraEnv: agentEnvironment(sandbox),
            deadline: workDeadline,
            budgetMs: deadline.budgetMs
        )
        let runner = self.runner
        let readOnly = context.request.sandbox == .readOnly
        let lease: AgentUidLease?
        switch await agentUid(sandbox, context: context, adopting: adopting) {
        case .success(let leased): lease = leased
        case .failure(let failure):
            result.fail(failure)
            await finishLedger(context.request.requestId, result: &result)
            return .failure(Refused(outcome: .ended(result)))
        }
        let user = lease?.user
        let home = runner.home(in: sandbox.path, tool: context.request.tool, owner: user)
        input.home = home
        input.uidLease = lease?.path
        input.diskPlaces = [sandbox.path]
        input.agentUid = lease?.uid
        let network = egress?.bridge
        if let egress { input.extraEnv.merge(egress.agentEnvironment) { $1 } }
        input.isolation = { executable in
            runner.isolation(of: sandbox, executable: executable, readOnly: readOnly, home: home.path, user: user, network: network)
        }
        return .success(Prepared(input: input, lease: lease, user: user, home: home, workDeadline: workDeadline, egress: egress))
    }

    /// An adopted run whose monitor is gone: lost, what it left ended and exported.
    @inline(never)
    func lost(_ result: DispatchResult, context: BackendContext) async -> BackendOutcome {
        var result = result
        result.failLost(AgentRunner.abandonedReason, request: context.request)
        let (salvaged, killed) = await salvage(result)
        return .ended(salvaged, processesKilled: killed)
    }

    /// Verification and export once the agent phase ended (nothing of it when it was let go of).
    @inline(never)
    func afterAgent(
        _ outcome: AgentPhase.Outcome,
        in sandbox: LocalSandbox,
        prepared: Prepared,
        context: BackendContext,
        result: DispatchResult,
        adopting: Bool
    ) async -> BackendOutcome {
        var result = result
        let lease = prepared.lease
        // Handed off: the attempt runs on under its monitor, its home and uid with it, for the next runner.
        if outcome.wasLetGo {
            await prepared.egress?.handOff()
            return .letGo(result)
        }
        defer { lease?.release() }
        result.apply(outcome)
        // What the dead runner may have started after the agent (a verification command) is not this run's any more.
        if adopting { _ = await runner.endMarked(context.request.requestId) }
        // The agent's processes are gone: what its CLI refreshed goes back to the agent home.
        prepared.home.writeBack()
        let verification = await withSpan("verification") { span in
            let verification = await verify(sandbox, context: context, prepared: prepared, result: &result)
            if let verification { span.attributes["dispatch.verification.success"] = verification.success }
            return verification
        }
        // Handed off during verification: the next runner adopts the ended agent and verifies again.
        if context.cancellation.isDetached {
            await prepared.egress?.handOff()
            return .letGo(result)
        }
        await prepared.egress?.finish(&result)
        // Nothing runs as the uid any more: the next run may have it (this run's files stay out of its sight).
        lease?.release()
        await withSpan("export") { span in
            await export(sandbox, verification: verification, deadline: context.deadline, result: &result)
            if let touched = result.artifacts?.touchedFiles { span.attributes["dispatch.export.touched_files"] = touched.count }
        }
        await finishLedger(context.request.requestId, result: &result)
        return .ended(result, processesKilled: outcome.processesKilled)
    }

    /// The uid the run's agent runs as, when the runner leases them, owning the checkout (``AgentRunner/leaseAgentUid``).
    @inline(never)
    func agentUid(_ sandbox: LocalSandbox, context: BackendContext, adopting: Bool) async -> Result<AgentUidLease?, DispatchFailure> {
        let runner = self.runner
        let requestId = context.request.requestId
        do {
            return .success(
                try await BlockingWork.run("lease an agent uid", timeout: context.deadline.remaining) {
                    let owned = [sandbox.repoPath, "\(sandbox.path)/.sandbox.env"]
                    return try runner.leaseAgentUid(recordIn: sandbox.path, owning: owned, requestId: requestId, adopting: adopting)
                }
            )
        } catch {
            return .failure(.message("cannot run the agent as an unprivileged uid: \(error)"))
        }
    }

    /// Plans the sandbox, registers it (before the checkout writes anything: a checkout cut short is known to the
    /// janitor) and checks it out; on failure records why in `result` and returns `nil`.
    @inline(never)
    func makeSandbox(_ context: BackendContext, result: inout DispatchResult) async -> LocalSandbox? {
        let request = context.request
        let deadline = context.deadline
        let token = context.cancellation
        let materializer = SandboxMaterializer(root: configuration.sandboxRoot)
        let defaultCwd = configuration.defaultWorkdir
        let planned: LocalSandbox
        do {
            planned = try await BlockingWork.run("resolve the sandbox's base", timeout: deadline.remaining) {
                try materializer.plan(request, defaultCwd: defaultCwd)
            }
        } catch {
            result.fail(Self.checkoutFailure(error, deadline: deadline, expired: false))
            return nil
        }
        do {
            try await ledger.register(planned, requestId: request.requestId)
        } catch {
            context.logger.error("cannot register sandbox", metadata: ["sandbox.id": "\(planned.sandboxId)", "error": "\(error)"])
        }
        if let pool {
            let claimed = await withSpan("warm claim") { span in
                let claimed = await claimWarm(planned, request: request, pool: pool, deadline: deadline)
                span.attributes["dispatch.warm.claimed"] = claimed != nil
                return claimed
            }
            if let claimed { return claimed }
        }
        let checkout = startSpan("checkout")
        defer { checkout.end() }
        checkout.attributes["dispatch.base_sha"] = planned.baseSha
        do {
            let cancellation = CheckoutCancellation()
            return try await BlockingWork.run("checkout", timeout: deadline.remaining, cancellation: cancellation) {
                try materializer.checkout(planned, request: request, cancellation: cancellation)
            }
        } catch {
            checkout.setStatus(SpanStatus(code: .error, message: String("\(error)".prefix(500))))
            result.fail(token.reason.map { .cancelled(reason: $0) } ?? Self.checkoutFailure(error, deadline: deadline, expired: deadline.isExpired))
            result.localSandbox = planned.info()
            await finishLedger(request.requestId, result: &result)
            return nil
        }
    }

    /// The planned sandbox from a ready checkout of the pool, if it has one at that commit; either way the pool
    /// now keeps checkouts of that commit.
    func claimWarm(_ planned: LocalSandbox, request: DispatchRequest, pool: WarmPool, deadline: Deadline) async -> LocalSandbox? {
        defer { pool.wanted(sourceRepo: planned.sourceRepo, baseSha: planned.baseSha) }
        let materializer = SandboxMaterializer(root: configuration.sandboxRoot)
        // No time limit: renames and two ref writes, and a limit would leave it moving files into the sandbox while
        // a fresh checkout is made there.
        let claimed = try? await BlockingWork.run("claim a warm checkout", timeout: nil) { () -> (WarmPool.Entry, Bool)? in
            guard let entry = pool.claim(into: planned) else { return nil }
            return (entry, (try? materializer.finish(planned, request: request)) != nil)
        }
        guard let (entry, finished) = claimed ?? nil else { return nil }
        await pool.forget(entry)
        return finished ? planned : nil
    }

    /// A checkout that did not finish, in words: out of budget, or failed with the reason.
    static func checkoutFailure(_ error: any Error, deadline: Deadline, expired: Bool) -> DispatchFailure {
        guard (error as? SandboxError)?.code == .timedOut || expired else { return .checkoutFailed(reason: "\(error)") }
        return .timedOut(.init(subject: "checkout", elapsedMs: deadline.elapsedMs, budgetMs: deadline.budgetMs, moment: .during("checkout")))
    }

    /// What the agent gets beside the usual variables: the sandbox's, and `IS_SANDBOX=1` when it is isolated
    /// (CONTRACT §1: then it is true, and Claude Code needs it to run as root).
    @inline(never)
    func agentEnvironment(_ sandbox: LocalSandbox) -> [String: String] {
        var environment = sandbox.environment
        if runner.isolation.mode == .bwrap { environment["IS_SANDBOX"] = "1" }
        return environment
    }

    /// Runs the verification commands after a completed agent phase; a failure fails the result.
    @inline(never)
    func verify(
        _ sandbox: LocalSandbox,
        context: BackendContext,
        prepared: Prepared,
        result: inout DispatchResult
    ) async -> Artifacts.Verification? {
        let (deadline, user) = (prepared.workDeadline, prepared.user)
        let request = context.request
        guard result.status == .completed, !request.verificationCommands.isEmpty else { return nil }
        let phase = VerificationPhase(
            supervisor: runner.supervisor,
            killGraceMs: configuration.killGraceMs,
            // Verification always dies with its runner: a runner that adopts the run ends and re-runs it anyway, and
            // its uid is leased only while the runner lives (no monitor holds it, as for the agent).
            diesWithRunner: true,
            isolation: runner.isolation(
                of: sandbox,
                executable: nil,
                readOnly: request.sandbox == .readOnly,
                user: user,
                network: prepared.egress?.bridge
            )
        )
        let environment = AgentEnvironment.build(
            request: request,
            base: runner.environment,
            extraNames: configuration.agentEnvPassthrough,
            extras: agentEnvironment(sandbox)
        )
        let check = await phase.run(
            request.verificationCommands,
            workDir: sandbox.workDir,
            logsDir: sandbox.logsDir,
            environment: environment,
            marker: AgentEnvironment.marker(requestId: request.requestId),
            deadline: deadline,
            budgetMs: context.deadline.budgetMs,
            token: context.cancellation
        )
        if let failure = check.failure {
            result.fail(context.cancellation.reason.map { .cancelled(reason: $0) } ?? failure)
        }
        return check.verification
    }

    /// Exports the patch and touched files (partial work is evidence: also after a failure), within what is
    /// left of the budget but at least ``minimumExportMs``.
    @inline(never)
    func export(_ sandbox: LocalSandbox, verification: Artifacts.Verification?, deadline: Deadline, result: inout DispatchResult) async {
        let exportTimeout = max(deadline.remaining, .milliseconds(Self.minimumExportMs))
        let maxPatchFileBytes = configuration.maxPatchFileBytes
        do {
            // Stopped and waited for at the limit: nothing of the export is written after the result. A cancelled
            // dispatch is exported too (partial work is evidence): only the limit stops it.
            let cancellation = CheckoutCancellation()
            var artifacts = try await uncancelled {
                try await BlockingWork.run("artifact export", timeout: exportTimeout, cancellation: cancellation) {
                    try ArtifactExporter(maxPatchFileBytes: maxPatchFileBytes).export(sandbox, cancellation: cancellation)
                }
            }
            artifacts.verification = verification
            result.artifacts = artifacts
        } catch {
            let failure: DispatchFailure =
                (error as? SandboxError)?.code == .timedOut
                ? .timedOut(
                    .init(
                        subject: "artifact export",
                        elapsedMs: Int(exportTimeout.milliseconds),
                        budgetMs: deadline.budgetMs,
                        moment: .during("artifacts")
                    )
                )
                : .message("artifact export failed: \(error)")
            result.artifacts = verification.map { Artifacts(verification: $0) }
            if result.status == .completed {
                result.fail(failure)
            } else {
                result.error = [result.error, failure.description].compactMap { $0 }.joined(separator: "; ")
            }
        }
    }

    /// Moves the sandbox's registry row to the result's status and records its `cleanupAfter`.
    @inline(never)
    func finishLedger(_ requestId: String, result: inout DispatchResult) async {
        if let cleanupAfter = try? await ledger.finish(requestId: requestId, status: result.status) {
            result.localSandbox?.cleanupAfter = cleanupAfter
        }
    }

    /// Ends what a dead runner's agent left and exports what it changed (partial work is evidence).
    @inline(never)
    package func salvage(_ result: DispatchResult) async -> (result: DispatchResult, processesKilled: Int) {
        AgentRunner.markAbandoned(result)
        let killed = await runner.endMarked(result.requestId)
        var result = result
        let maxPatchFileBytes = configuration.maxPatchFileBytes
        if let info = result.localSandbox {
            let cancellation = CheckoutCancellation()
            result.artifacts = try? await uncancelled {
                try await BlockingWork.run("artifact export", timeout: .seconds(30), cancellation: cancellation) {
                    try ArtifactExporter(maxPatchFileBytes: maxPatchFileBytes).export(LocalSandbox(abandoned: info), cancellation: cancellation)
                }
            }
        }
        await finishLedger(result.requestId, result: &result)
        return (result, killed)
    }
}

extension AgentRunner {
    /// The namespaces of a sandboxed agent (or its verification): its own checkout writable (read-only for the
    /// `read-only` profile), the host checkout and the agent's program visible, the rest read-only or hidden.
    func isolation(
        of sandbox: LocalSandbox,
        executable: String?,
        readOnly: Bool,
        home: String? = nil,
        user: AgentUser? = nil,
        network: NetworkBridge? = nil
    ) -> (bwrap: String, view: IsolationView)? {
        sandboxIsolation(
            checkout: sandbox.repoPath,
            sandboxEnvFile: "\(sandbox.path)/.sandbox.env",
            hostCheckout: sandbox.sourceRepo,
            executable: executable,
            readOnlyCheckout: readOnly,
            home: home,
            user: user,
            network: network
        )
    }
}
