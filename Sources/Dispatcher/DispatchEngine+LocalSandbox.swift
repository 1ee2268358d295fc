import AgentProcess
import DispatchCore
import DispatchStore
import Foundation
import Git
import Logging
import Sandbox

extension DispatchEngine {
    /// Budget kept back from the agent for artifact export: a tenth of the budget, at most 30 s, and only when
    /// the agent would still get at least its minimum attempt time.
    static func artifactReserveMs(budgetMs: Int) -> Int {
        let reserve = min(budgetMs / 10, 30_000)
        return budgetMs - reserve >= AgentPhase.minimumAttemptMs ? reserve : 0
    }

    /// Export gets at least this long even when the agent used up the budget (partial work is evidence).
    static let minimumExportMs = 1000

    /// Sandbox mode, local backend: checkout at baseSha → agent → verification → artifacts, in one budget.
    func runLocalSandbox(
        _ request: DispatchRequest, result: DispatchResult, deadline: Deadline, token: CancelToken, logger: Logger
    ) async -> DispatchResult {
        var result = result
        let materializer = SandboxMaterializer(root: configuration.sandboxRoot)
        let defaultCwd = configuration.defaultWorkdir
        let planned: LocalSandbox
        do {
            planned = try await BlockingWork.run("resolve the sandbox's base", timeout: deadline.remaining) {
                try materializer.plan(request, defaultCwd: defaultCwd)
            }
        } catch {
            result.status = .failed
            result.error = (error as? SandboxError)?.code == .timedOut
                ? "checkout timed out after \(deadline.elapsedMs)ms (budget \(deadline.budgetMs)ms) during checkout"
                : "checkout failed: \(error)"
            return result
        }
        // Registered before the checkout writes anything: a checkout cut short is known to the janitor.
        let registry = SandboxRegistry(store: store)
        do {
            try await registry.register(planned, requestId: request.requestId)
        } catch {
            logger.error("cannot register sandbox", metadata: ["sandbox.id": "\(planned.sandboxId)", "error": "\(error)"])
        }
        let sandbox: LocalSandbox
        do {
            let cancellation = CheckoutCancellation()
            sandbox = try await BlockingWork.run("checkout", timeout: deadline.remaining, cancellation: cancellation) {
                try materializer.checkout(planned, request: request, cancellation: cancellation)
            }
        } catch {
            result.status = token.reason != nil ? .cancelled : .failed
            result.error = token.reason
                ?? ((error as? SandboxError)?.code == .timedOut || deadline.isExpired
                    ? "checkout timed out after \(deadline.elapsedMs)ms (budget \(deadline.budgetMs)ms) during checkout"
                    : "checkout failed: \(error)")
            result.localSandbox = planned.info()
            if let cleanupAfter = try? await registry.finish(requestId: request.requestId, status: result.status) {
                result.localSandbox?.cleanupAfter = cleanupAfter
            }
            return result
        }
        result.localSandbox = sandbox.info()
        var running = result
        running.updatedAt = ISO8601.string(Date())
        _ = await persist(running, owner: nil, logger: logger)

        let reserveMs = Self.artifactReserveMs(budgetMs: deadline.budgetMs)
        let workDeadline = Deadline(budgetMs: deadline.budgetMs - reserveMs, start: deadline.start)
        let input = AgentPhase.Input(
            request: request, task: sandbox.task(wrapping: request.task), workDir: sandbox.workDir, logsDir: sandbox.logsDir,
            extraEnv: sandbox.environment, deadline: workDeadline, budgetMs: deadline.budgetMs)
        result.apply(await runAgentPhase(input, result: result, token: token, logger: logger))

        var verification: Artifacts.Verification?
        if result.status == .completed, !request.verificationCommands.isEmpty {
            let check = await VerificationPhase(
                supervisor: supervisor, killGraceMs: configuration.killGraceMs, diesWithRunner: configuration.agentsDieWithRunner).run(
                request.verificationCommands, workDir: sandbox.workDir, logsDir: sandbox.logsDir,
                environment: AgentEnvironment.build(
                    request: request, base: environment, extraNames: configuration.agentEnvPassthrough, extras: sandbox.environment),
                marker: AgentEnvironment.marker(requestId: request.requestId), deadline: workDeadline, budgetMs: deadline.budgetMs,
                token: token)
            verification = check.verification
            if let error = check.error {
                result.status = token.reason != nil ? .cancelled : .failed
                result.error = token.reason ?? error
                result.result = nil
            }
        }

        let exportTimeout = max(deadline.remaining, .milliseconds(Self.minimumExportMs))
        let maxPatchFileBytes = configuration.maxPatchFileBytes
        do {
            var artifacts = try await BlockingWork.run("artifact export", timeout: exportTimeout) { try ArtifactExporter(maxPatchFileBytes: maxPatchFileBytes).export(sandbox) }
            artifacts.verification = verification
            result.artifacts = artifacts
        } catch {
            let reason = (error as? SandboxError)?.code == .timedOut
                ? "artifact export timed out after \(exportTimeout.milliseconds)ms (budget \(deadline.budgetMs)ms) during artifacts"
                : "artifact export failed: \(error)"
            result.artifacts = verification.map { Artifacts(verification: $0) }
            if result.status == .completed {
                result.status = .failed
                result.error = reason
                result.result = nil
            } else {
                result.error = [result.error, reason].compactMap { $0 }.joined(separator: "; ")
            }
        }
        if let cleanupAfter = try? await registry.finish(requestId: request.requestId, status: result.status) {
            result.localSandbox?.cleanupAfter = cleanupAfter
        }
        return result
    }
}
