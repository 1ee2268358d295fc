import AgentProcess
import DispatchCore
import Foundation
import Logging
import Tracing

/// The agent phase of a dispatch: one process per attempt (`model`, then each fallback), all inside the one budget.
package final class AgentPhase: Sendable {
    /// Where and how the agent runs.
    package struct Input: Sendable {
        package var request: DispatchRequest
        /// The text the agent receives (a sandbox adds its preamble).
        package var task: String
        package var workDir: String
        package var logsDir: String
        package var extraEnv: [String: String]
        /// The agent phase's own deadline (the overall one, less any reserve for later phases).
        package var deadline: Deadline
        /// The overall budget, for messages.
        package var budgetMs: Int
        /// Leave the last attempt's leftovers (an orphan holding stderr) for the caller to end once the result is
        /// written (host mode: the result never waits for them). Earlier attempts' leftovers are ended before the next.
        package var sweepAfterResult = false
        /// The run's own home (CONTRACT §7), provisioned before the first attempt; `nil`: the runner's environment's.
        package var home: AgentHome?
        /// The namespaces each attempt runs in, given the agent's resolved executable (`nil`: isolation off).
        package var isolation: @Sendable (_ executable: String) -> (bwrap: String, view: IsolationView)? = { _ in nil }
        /// The run's places on disk (its checkout, logs and home) that `DISPATCH_MAX_RUN_DISK_BYTES` covers.
        package var diskPlaces: [String] = []
        /// The uid leased to the run, when it has one: no other run's (``RunDiskWatch`` counts what its processes
        /// unlinked but hold).
        package var agentUid: UInt32?
        /// The run's agent uid lease file, which each attempt's monitor holds too (``AgentUidLeases``).
        package var uidLease: String?

        /// The input of one agent phase.
        package init(
            request: DispatchRequest,
            task: String,
            workDir: String,
            logsDir: String,
            extraEnv: [String: String],
            deadline: Deadline,
            budgetMs: Int
        ) {
            self.request = request
            self.task = task
            self.workDir = workDir
            self.logsDir = logsDir
            self.extraEnv = extraEnv
            self.deadline = deadline
            self.budgetMs = budgetMs
        }
    }

    /// What the attempts came to.
    package struct Outcome: Sendable {
        package var status: DispatchStatus
        package var finalText: String?
        package var failure: DispatchFailure?
        package var attempts: [AttemptRecord] = []
        package var logs: LogInfo?
        /// Process groups the runner ended plus leftovers it killed.
        package var processesKilled = 0
        /// The last attempt's process group, whose leftovers the caller ends after writing the result.
        package var pendingSweep: pid_t?
        /// The last attempt's cgroups, ended and removed with those leftovers.
        package var pendingCgroup: RunCgroup?
        /// Whether the pending sweep's attempt ended by itself in its own pid namespace.
        package var pendingIsolatedExit = false

        /// The phase was let go of (a `serve` handing its runs off): its attempt runs on, for the next runner to adopt;
        /// nothing of it is to be recorded, swept or exported here.
        package var wasLetGo = false

        /// Ends the phase let go of.
        mutating func letGo() -> Outcome {
            wasLetGo = true
            pendingSweep = nil
            return self
        }

        /// Ends the phase `failed` (or `cancelled`) with `failure`.
        mutating func end(_ failure: DispatchFailure) -> Outcome {
            if case .cancelled = failure { status = .cancelled } else { status = .failed }
            self.failure = failure
            return self
        }
    }

    /// How much of the end of stdout the completion probe reads.
    static let probeTailBytes = 256 * 1024

    /// Shortest time an attempt is started with.
    package static let minimumAttemptMs = 1000

    /// How much of the end of stdout is parsed for the final text and events.
    static let parseWindowBytes = 8 << 20

    let configuration: DispatchConfiguration
    let baseEnvironment: [String: String]
    let supervisor: ProcessSupervisor
    let logger: Logger
    /// `dispatch-monitor`, when isolated attempts are held by a monitor that outlives the runner (`serve`).
    let monitorProgram: String?

    /// A phase over `supervisor`, with the runner's environment as the base of the agent's.
    package init(
        configuration: DispatchConfiguration,
        baseEnvironment: [String: String],
        supervisor: ProcessSupervisor,
        logger: Logger,
        monitorProgram: String? = nil
    ) {
        self.configuration = configuration
        self.baseEnvironment = baseEnvironment
        self.supervisor = supervisor
        self.logger = logger
        self.monitorProgram = monitorProgram
    }

    /// What every attempt shares: the executable, the environment, the task file.
    struct Launch: Sendable {
        var executable: String
        var environment: [String: String]
        var stdinPath: String?
        var outsideGitRepository: Bool
        var adapter: any AgentAdapter
    }

    /// Runs the attempts. `attemptStarting` is awaited before each process starts (to record `running` with log paths).
    package func run(_ input: Input, token: CancelToken, attemptStarting: @Sendable (LogInfo, [AttemptRecord]) async -> Void) async -> Outcome {
        var outcome = Outcome(status: .failed)
        let launch: Launch
        switch prepare(input) {
        case .success(let prepared): launch = prepared
        case .failure(let failure): return outcome.end(failure)
        }
        return await runAttempts(from: 0, input: input, launch: launch, token: token, outcome: outcome, attemptStarting: attemptStarting)
    }

    /// Runs the attempts from `first` (0-based) on, after what `outcome` holds.
    func runAttempts(
        from first: Int,
        input: Input,
        launch: Launch,
        token: CancelToken,
        outcome: Outcome,
        attemptStarting: @Sendable (LogInfo, [AttemptRecord]) async -> Void
    ) async -> Outcome {
        var outcome = outcome
        let models = input.request.modelAttempts
        for (index, model) in models.enumerated() where index >= first {
            let label = "agent attempt \(index + 1)/\(models.count)"
            if token.isDetached { return outcome.letGo() }
            if Task.isCancelled || token.reason != nil { return outcome.end(.cancelled(reason: token.reason ?? "cancelled")) }
            let allowedMs = input.deadline.remainingMs
            guard allowedMs >= Self.minimumAttemptMs else { return Self.notEnoughLeft(allowedMs, toStart: label, input: input, outcome: &outcome) }
            let logs = Self.logs(of: index, in: input.logsDir)
            await attemptStarting(logs, outcome.attempts)
            // Stopped or handed off while the attempt was being recorded: nothing is started.
            if token.isDetached { return outcome.letGo() }
            if let reason = token.reason { return outcome.end(.cancelled(reason: reason)) }
            let attempt = Attempt(model: model, label: label, allowedMs: allowedMs, logs: logs)
            if let ended = await runAttempt(attempt, input: input, launch: launch, token: token, outcome: &outcome) { return ended }
        }
        if models.count > 1, let last = outcome.failure {
            outcome.failure = .message("all \(models.count) agent attempts failed; last: \(last)")
        }
        return outcome
    }

    /// Ends the attempts timed out: `remainingMs` is too little to start `label`. Not async, and out of line: the
    /// failure's words are built outside the frame of the attempts, which lives as long as the agent runs.
    @inline(never)
    static func notEnoughLeft(_ remainingMs: Int, toStart label: String, input: Input, outcome: inout Outcome) -> Outcome {
        let previous = outcome.failure.map { "; previous attempt: \($0)" } ?? ""
        return outcome.end(
            .timedOut(
                .init(
                    subject: input.request.tool.rawValue,
                    elapsedMs: input.deadline.elapsedMs,
                    budgetMs: input.budgetMs,
                    moment: .notEnoughLeft(remainingMs: remainingMs, toStart: label),
                    detail: previous
                )
            )
        )
    }

    /// The log files of attempt `index` (0-based).
    static func logs(of index: Int, in logsDir: String) -> LogInfo {
        LogInfo(
            stdout: "",
            stderr: "",
            stdoutPath: "\(logsDir)/attempt-\(index + 1).stdout.log",
            stderrPath: "\(logsDir)/attempt-\(index + 1).stderr.log"
        )
    }

    /// One attempt: its model, its label in messages, its share of the budget and its log files.
    struct Attempt: Sendable {
        var model: String?
        var label: String
        var allowedMs: Int
        var logs: LogInfo
    }

    /// Finds the executable and writes the task file, or says why the agent cannot be started at all.
    @inline(never)
    func prepare(_ input: Input) -> Result<Launch, DispatchFailure> {
        let request = input.request
        let adapter = AgentAdapters.adapter(for: request.tool)
        var env = AgentEnvironment.build(
            request: request,
            base: baseEnvironment,
            extraNames: configuration.agentEnvPassthrough,
            extras: input.extraEnv
        )
        if request.tool == .canary { env.merge(canaryProbes()) { $1 } }
        if let home = input.home {
            do {
                try home.provision()
            } catch {
                return .failure(.message("cannot prepare the agent's home \(home.path): \(error)"))
            }
            env = AgentEnvironment.withHome(env, home: home.path)
        }
        let program = configuration.program(for: request.tool)
        guard let executable = ExecutableLocator.locate(program, searchPath: env["PATH"]) else {
            let hint = DispatchConfiguration.binVariable(for: request.tool).map { " (set \($0) to its path)" } ?? ""
            return .failure(.message("\(request.tool.rawValue) executable \"\(program)\" was not found on PATH\(hint)"))
        }
        let isolation = input.isolation(executable)
        let outsideGitRepository = request.tool == .codex && !Self.isInsideGitRepository(input.workDir)
        if let problem = cliProblem(executable, request: request, isolated: isolation != nil, outsideGitRepository: outsideGitRepository) {
            return .failure(.message(problem))
        }
        // Claude Code as root refuses --dangerously-skip-permissions unless IS_SANDBOX=1 (CONTRACT §1): say so
        // before spawning rather than after a confusing exit. An agent user of a root runner is not root.
        if request.tool == .claude, geteuid() == 0, isolation?.view.user == nil, env["IS_SANDBOX"] != "1" {
            return .failure(
                .message(
                    "claude refuses --dangerously-skip-permissions when run as root unless IS_SANDBOX=1: run the runner as another user, or "
                        + "pass IS_SANDBOX=1 through (DISPATCH_AGENT_ENV=IS_SANDBOX with IS_SANDBOX=1 set for the runner)"
                )
            )
        }
        var launch = Launch(
            executable: executable,
            environment: env,
            stdinPath: nil,
            outsideGitRepository: outsideGitRepository,
            adapter: adapter
        )
        let first = adapter.invocation(request: request, task: input.task, model: request.modelAttempts[0], program: executable)
        if first.stdinText != nil {
            let path = "\(input.logsDir)/task.txt"
            do {
                try FileManager.default.createDirectory(atPath: input.logsDir, withIntermediateDirectories: true)
                try Data(input.task.utf8).write(to: URL(fileURLWithPath: path))
            } catch {
                return .failure(.message("cannot write the task file \(path): \(error)"))
            }
            launch.stdinPath = path
        }
        return .success(launch)
    }

    /// Why the configured CLI cannot run this request's attempts (what its own help says it accepts, probed once per
    /// binary and remembered in the state dir); `nil` when it can.
    func cliProblem(_ executable: String, request: DispatchRequest, isolated: Bool, outsideGitRepository: Bool) -> String? {
        guard request.tool != .canary else { return nil }
        let probe = CLIProbe.probe(executable, tool: request.tool.rawValue, cacheDirectory: configuration.stateDir)
        return CLIRequirements.problem(probe, request: request, isolated: isolated, outsideGitRepository: outsideGitRepository)
    }

    /// Runs one attempt and records it in `outcome`; returns the outcome when the phase ends with it.
    @inline(never)
    func runAttempt(_ attempt: Attempt, input: Input, launch: Launch, token: CancelToken, outcome: inout Outcome) async -> Outcome? {
        // A span of the dispatch's trace (CONTRACT §11): the tool, the model, how the process ended and what it used.
        let span = Self.attemptSpan(attempt, tool: input.request.tool)
        let recorded = outcome.attempts.count
        defer { Self.describe(outcome.attempts.count > recorded ? outcome.attempts.last : nil, on: span) }
        let spec = processSpec(attempt, input: input, launch: launch)
        let limits = limits(timeoutMs: attempt.allowedMs, token: token)
        let adapter = launch.adapter
        let probe = Self.completionProbe(adapter, stdoutPath: attempt.logs.stdoutPath)
        logger.debug("starting \(attempt.label)", metadata: ["model": "\(attempt.model ?? "default")", "pid.argv0": "\(launch.executable)"])
        if let previous = outcome.pendingSweep {
            outcome.processesKilled += await supervisor.endLeftovers(
                groupId: previous,
                marker: spec.marker,
                grace: supervisor.leftoverGrace,
                cgroup: outcome.pendingCgroup,
                isolatedExit: outcome.pendingIsolatedExit
            )
            (outcome.pendingSweep, outcome.pendingCgroup, outcome.pendingIsolatedExit) = (nil, nil, false)
        }
        let process: ProcessOutcome
        do {
            process = try await supervisor.run(spec, limits: limits, finalEventSeen: probe, sweepLeftovers: !input.sweepAfterResult)
            if input.sweepAfterResult {
                (outcome.pendingSweep, outcome.pendingCgroup, outcome.pendingIsolatedExit) = (
                    process.pid, process.cgroup, process.endedByItselfIsolated
                )
            }
        } catch {
            Self.couldNotStart(attempt, error: error, tool: input.request.tool, outcome: &outcome)
            return nil
        }
        if process.ending == .letGo { return outcome.letGo() }
        return record(process, of: attempt, input: input, adapter: adapter, token: token, outcome: &outcome)
    }

    /// The span of one attempt, in the dispatch's trace.
    @inline(never)
    static func attemptSpan(_ attempt: Attempt, tool: AgentTool) -> any Span {
        let span = startSpan("agent attempt")
        span.attributes["dispatch.attempt"] = attempt.label
        span.attributes["dispatch.tool"] = tool.rawValue
        span.attributes["dispatch.model"] = attempt.model ?? "default"
        return span
    }

    /// Ends an attempt's span with how its process ended and what it used (nothing of an attempt never recorded).
    @inline(never)
    static func describe(_ record: AttemptRecord?, on span: any Span) {
        if let record {
            if let exitCode = record.exitCode { span.attributes["process.exit_code"] = exitCode }
            if let signal = record.signal { span.attributes["process.signal"] = signal }
            span.attributes["dispatch.timed_out"] = record.timedOut
            if let usage = record.usage { DispatchUsageAttributes.describe(usage, on: span) }
            if let error = record.error { span.setStatus(SpanStatus(code: .error, message: String(error.prefix(500)))) }
        }
        span.end()
    }

    /// Records an attempt whose process could not be started (out of line, as ``notEnoughLeft(_:toStart:input:outcome:)``).
    @inline(never)
    static func couldNotStart(_ attempt: Attempt, error: any Error, tool: AgentTool, outcome: inout Outcome) {
        let failure = DispatchFailure.message("\(tool.rawValue) could not be started for \(attempt.label): \(error)")
        outcome.failure = failure
        outcome.attempts.append(
            AttemptRecord(
                model: attempt.model,
                startedAt: ISO8601.string(Date()),
                durationMs: 0,
                exitCode: nil,
                signal: nil,
                timedOut: false,
                error: failure.description
            )
        )
    }

    /// The limits of an attempt with `timeoutMs` left.
    func limits(timeoutMs: Int, token: CancelToken) -> ProcessLimits {
        var limits = ProcessLimits(
            timeout: .milliseconds(timeoutMs),
            killGrace: .milliseconds(configuration.killGraceMs),
            completionGrace: .milliseconds(configuration.completionGraceMs),
            maxLogBytes: configuration.maxLogBytes
        )
        limits.letGo = token.letGo
        limits.stop = token.stopped
        return limits
    }

    /// Whether the agent printed its final event: the last thing an agent prints, so only the tail is read, not the
    /// whole (possibly huge) log. `nil` for agents whose completion is their exit.
    static func completionProbe(_ adapter: any AgentAdapter, stdoutPath: String) -> (@Sendable () -> Bool)? {
        guard adapter.detectsCompletion else { return nil }
        return { @Sendable in adapter.parse(stdout: LogFile.tail(stdoutPath, maxBytes: Self.probeTailBytes)).sawFinalEvent }
    }

    /// The process of one attempt, argv built without a shell.
    @inline(never)
    func processSpec(_ attempt: Attempt, input: Input, launch: Launch) -> ProcessSpec {
        var invocation = launch.adapter.invocation(request: input.request, task: input.task, model: attempt.model, program: launch.executable)
        if launch.outsideGitRepository { invocation = CodexAdapter.outsideGitRepository(invocation) }
        let isolation = input.isolation(launch.executable)
        if input.request.tool == .codex, isolation != nil { invocation = CodexAdapter.underRunnerIsolation(invocation) }
        var spec = ProcessSpec(
            executablePath: launch.executable,
            argv: [invocation.program] + invocation.arguments,
            environment: launch.environment,
            workingDirectory: input.workDir,
            stdinPath: invocation.stdinText == nil ? nil : launch.stdinPath,
            stdoutPath: attempt.logs.stdoutPath,
            stderrPath: attempt.logs.stderrPath,
            marker: AgentEnvironment.marker(requestId: input.request.requestId),
            diesWithRunner: configuration.agentsDieWithRunner
        )
        spec.isolation = isolation
        if let monitorProgram, spec.isolation != nil, let record = MonitorRecord(stdoutPath: attempt.logs.stdoutPath) {
            for stale in ["monitor", "owner", "status"] { unlink("\(record.prefix).\(stale)") }
            spec.monitor = MonitorSpec(
                program: monitorProgram,
                recordPrefix: record.prefix,
                allowedMs: attempt.allowedMs,
                slackMs: configuration.killGraceMs + Self.monitorSlackMs,
                graceMs: configuration.killGraceMs,
                leaseMs: configuration.leaseSeconds * 1000
            )
            spec.monitor?.uidLease = input.uidLease
        }
        return spec
    }

    /// How long after the runner's own deadline (and kill grace) the monitor ends an attempt itself: a live runner
    /// always ends it first, with its own words.
    package static let monitorSlackMs = 2000

    /// Judges an ended attempt, records it, and returns the outcome when the phase ends with it.
    @inline(never)
    func record(
        _ process: ProcessOutcome,
        of attempt: Attempt,
        input: Input,
        adapter: any AgentAdapter,
        token: CancelToken,
        outcome: inout Outcome
    ) -> Outcome? {
        outcome.processesKilled += process.leftoversKilled + (process.ending == .exited ? 0 : 1)
        let logs = attempt.logs
        outcome.logs = LogInfo(
            stdout: LogFile.tail(logs.stdoutPath, maxBytes: LogInfo.tailBytes),
            stderr: LogFile.tail(logs.stderrPath, maxBytes: LogInfo.tailBytes),
            stdoutPath: logs.stdoutPath,
            stderrPath: logs.stderrPath
        )
        // A bounded window from the end: the final events are the last thing an agent prints, and memory must not
        // grow with the output (a flood before them, a 50 MB line included, is skipped).
        let parsed = adapter.parse(stdout: LogFile.tail(logs.stdoutPath, maxBytes: Self.parseWindowBytes))
        var judge = AttemptJudge(tool: adapter.tool.rawValue, label: attempt.label, budgetMs: input.budgetMs, maxLogBytes: configuration.maxLogBytes)
        judge.maxMemoryBytes = configuration.maxMemoryBytes
        let failure = judge.failure(
            of: process,
            parsed: parsed,
            adapter: adapter,
            allowedMs: attempt.allowedMs,
            stderrTail: outcome.logs?.stderr ?? "",
            token: token
        )
        var record = AttemptRecord(
            model: attempt.model,
            startedAt: ISO8601.string(process.startedAt),
            durationMs: process.durationMs,
            exitCode: process.exitCode.map(Int.init),
            signal: process.signal.map(Int.init),
            timedOut: process.ending == .timedOut,
            error: failure?.description
        )
        record.warnings = parsed.warnings.isEmpty ? nil : parsed.warnings
        record.usage = parsed.usage ?? AgentUsage()
        outcome.attempts.append(record)
        logger.info(
            "\(attempt.label) ended",
            metadata: [
                "ending": "\(process.ending.rawValue)", "exit": "\(process.exitCode.map(String.init) ?? "-")",
                "durationMs": "\(process.durationMs)", "leftoversKilled": "\(process.leftoversKilled)",
            ]
        )
        guard let failure else {
            outcome.status = .completed
            outcome.finalText = parsed.finalText ?? ""
            outcome.failure = nil
            return outcome
        }
        outcome.failure = failure
        if case .cancelled = failure { return outcome.end(failure) }
        // A timeout ends the budget; a flooding agent ends the dispatch (another attempt would flood the same way).
        // A run nobody adopted in time is over, as the monitor recorded.
        if [.timedOut, .outputLimit, .runnerLost].contains(process.ending) { return outcome.end(failure) }
        return nil
    }

    /// What the escape canary tries to read: where the runner keeps its state and its token (names, not contents),
    /// and a private secret of the runner's in its state dir that always exists — so the check has something to fail
    /// on when the token lives only in the environment or the state dir has no token file yet.
    func canaryProbes() -> [String: String] {
        let tokenFile = configuration.tokenFile ?? "\(configuration.stateDir)/token"
        var probes = ["DISPATCH_CANARY_STATE_DIR": configuration.stateDir]
        if FileManager.default.fileExists(atPath: tokenFile) { probes["DISPATCH_CANARY_TOKEN_FILE"] = tokenFile }
        if let secret = Self.canarySecret(stateDir: configuration.stateDir) { probes["DISPATCH_CANARY_SECRET_FILE"] = secret }
        return probes
    }

    /// `<state>/canary-secret`: 64 random hex characters, 0600, made once. Anything else at that path (a planted
    /// symlink, a file left empty by a crash or a full disk) is replaced: an empty or unreadable "secret" would let the
    /// check pass without isolation. Written to a temp file and linked into place, so no reader sees it half-written.
    static func canarySecret(stateDir: String) -> String? {
        let path = "\(stateDir)/canary-secret"
        var info = stat()
        if lstat(path, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFREG, info.st_size == 64 { return path }
            unlink(path)
        }
        let temp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return nil }
        defer { unlink(temp) }
        let bytes = Array((0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined().utf8)
        let written = write(fd, bytes, bytes.count)
        close(fd)
        guard written == bytes.count else { return nil }
        // A racing runner's secret wins; either way one complete file is there.
        return link(temp, path) == 0 || errno == EEXIST ? path : nil
    }

    /// Whether `path` is inside a git work tree (a `.git` directory or file in it or a parent).
    static func isInsideGitRepository(_ path: String) -> Bool {
        var current = URL(fileURLWithPath: path).standardizedFileURL.path
        while true {
            if FileManager.default.fileExists(atPath: "\(current)/.git") { return true }
            let parent = (current as NSString).deletingLastPathComponent
            if parent == current || parent.isEmpty { return false }
            current = parent
        }
    }
}

/// Tokens and cost as span attributes (CONTRACT §11), the same names on an attempt's span and a dispatch's.
package enum DispatchUsageAttributes {
    package static func describe(_ usage: AgentUsage, on span: any Span) {
        if let value = usage.inputTokens { span.attributes["dispatch.usage.input_tokens"] = value }
        if let value = usage.cachedInputTokens { span.attributes["dispatch.usage.cached_input_tokens"] = value }
        if let value = usage.outputTokens { span.attributes["dispatch.usage.output_tokens"] = value }
        if let value = usage.reasoningTokens { span.attributes["dispatch.usage.reasoning_tokens"] = value }
        if let value = usage.costUsd { span.attributes["dispatch.usage.cost_usd"] = value }
    }
}
