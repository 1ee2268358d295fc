import AgentProcess
import AsyncHTTPClient
import DispatchCore
import DispatchStore
import Dispatcher
import Execution
import Foundation
import Git
import Kube
import Logging
import NIOCore
import Sandbox

/// `dispatch job-runner`: the k8s Job entrypoint. Reads the env contract (CONTRACT §5), clones the repo,
/// runs the request through the same sandbox/agent/budget/artifact code as the local backend, prints the
/// result between markers and POSTs it to the callback URL.
struct JobRunner: Sendable {

    let environment: [String: String]
    let workspace: String
    let logger: Logger

    init(environment: [String: String], workspace: String, logger: Logger) {
        self.environment = environment
        self.workspace = workspace
        self.logger = logger
    }

    /// The variables the runner cannot work without (the task comes as `TASK_PROMPT_FILE` or `TASK_PROMPT_B64`).
    static let required = ["REQUEST_ID", "REPO_URL", "AGENT_PROGRAM", "TIMEOUT_SECONDS"]

    /// Largest task or verification file read (the validator then holds the task to 256 KiB).
    static let maxInputFileBytes = 4 << 20

    /// Runs to a terminal report; never throws. Exit code: 0 completed, 1 failed, 143 cancelled.
    func run(token: CancelToken) async -> (report: SandboxExecutionResult, exitCode: Int32) {
        let startedAt = Date()
        let requestId = environment["REQUEST_ID"].flatMap { $0.isEmpty ? nil : $0 } ?? "unknown"
        let job = JobInfo(
            name: environment["JOB_NAME"] ?? "",
            namespace: environment["JOB_NAMESPACE"] ?? "",
            podName: environment["HOSTNAME"]
        )
        var report = SandboxExecutionResult(requestId: requestId, state: .running, startedAt: ISO8601.string(startedAt), job: job)
        let callback = Callback(environment: environment, logger: logger)

        let outcome: (SandboxExecutionResult, Int32)
        do {
            let request = try parseRequest()
            // `running` goes out beside the work: an unreachable callback must not delay the agent.
            let postRunning: @Sendable () async -> Void = { [report] in await callback.post(report, attempts: 3) }
            outcome = await alongside(postRunning) { await execute(request, report: report, token: token) }
        } catch {
            report.state = .failed
            report.error = "\(error)"
            outcome = (report, 1)
        }
        var final = outcome.0
        final.completedAt = ISO8601.string(Date())
        final.durationMs = Int(Date().timeIntervalSince(startedAt) * 1000)
        let document = String(decoding: (try? StoreJSON.encode(final)) ?? Data(), as: UTF8.self)
        FileHandle.standardOutput.write(Data("\(ResultMarkers.start)\n\(document)\n\(ResultMarkers.end)\n".utf8))
        // Outside cancellation: after SIGTERM this task is cancelled, and a cancelled task's requests are dropped unsent.
        await uncancelled { [final] in await callback.post(final, attempts: 5) }
        return (final, outcome.1)
    }

    /// The request the env contract describes; an error names every missing or invalid variable.
    func parseRequest() throws -> DispatchRequest {
        var missing = Self.required.filter { (environment[$0] ?? "").isEmpty }
        if (environment["TASK_PROMPT_FILE"] ?? "").isEmpty, (environment["TASK_PROMPT_B64"] ?? "").isEmpty {
            missing.append("TASK_PROMPT_FILE (or TASK_PROMPT_B64)")
        }
        guard missing.isEmpty else {
            throw JobRunnerError("missing environment variable\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", "))")
        }
        guard !HostileValueRules.urlHasCredentials(environment["REPO_URL"]!) else {
            throw JobRunnerError("REPO_URL carries credentials; git credentials come from GIT_CREDENTIALS_DIR (DISPATCH_K8S_GIT_SECRET)")
        }
        guard let taskData = try input(file: "TASK_PROMPT_FILE", base64: "TASK_PROMPT_B64"), let task = String(data: taskData, encoding: .utf8) else {
            throw JobRunnerError("the task (TASK_PROMPT_FILE or TASK_PROMPT_B64) is not UTF-8 text")
        }
        var verification: [String] = []
        if let data = try input(file: "VERIFICATION_COMMANDS_FILE", base64: "VERIFICATION_COMMANDS_B64"), !data.isEmpty {
            guard let commands = try? JSONDecoder().decode([String].self, from: data) else {
                throw JobRunnerError(
                    "the verification commands (VERIFICATION_COMMANDS_FILE or VERIFICATION_COMMANDS_B64) are not a JSON array of strings"
                )
            }
            verification = commands
        }
        guard let timeout = Double(environment["TIMEOUT_SECONDS"]!) else { throw JobRunnerError("TIMEOUT_SECONDS is not a number") }
        guard timeout.isFinite else {
            throw JobRunnerError("invalid job environment: \(RequestValidationError(field: "timeout", message: "must be a finite number"))")
        }
        func value(_ variable: String) -> String? { environment[variable].flatMap { $0.isEmpty ? nil : $0 } }
        let body = JobRequestBody(
            requestId: environment["REQUEST_ID"]!,
            task: task,
            tool: environment["AGENT_PROGRAM"]!,
            timeout: timeout,
            verificationCommands: verification,
            model: value("AGENT_MODEL"),
            workflowId: value("WORKFLOW_ID"),
            storyId: value("STORY_ID"),
            baseSha: value("BASE_SHA"),
            branch: value("REPO_BRANCH")
        )
        do {
            // Through the same validator as an HTTP body: the Job's variables get no trust the API would not give.
            return try RequestValidator.validate(json: try JSONEncoder().encode(body))
        } catch let error as RequestValidationError {
            throw JobRunnerError("invalid job environment: \(error)")
        }
    }

    /// The bytes of `file` (a path variable, preferred) or of `base64`; `nil` when neither is set.
    func input(file: String, base64: String) throws -> Data? {
        if let path = environment[file], !path.isEmpty {
            guard let handle = FileHandle(forReadingAtPath: path) else { throw JobRunnerError("\(file) \(path) cannot be read") }
            defer { try? handle.close() }
            let data = (try? handle.read(upToCount: Self.maxInputFileBytes)) ?? Data()
            return data
        }
        guard let encoded = environment[base64], !encoded.isEmpty else { return nil }
        guard let data = Data(base64Encoded: encoded) else { throw JobRunnerError("\(base64) is not base64") }
        return data
    }

    /// Git credentials from `GIT_CREDENTIALS_DIR` (the mounted `DISPATCH_K8S_GIT_SECRET`): `username` + `password`,
    /// or `token` (sent as the password, with `username` or `x-access-token`).
    func gitCredentials() throws -> GitCredentials? {
        guard let directory = environment["GIT_CREDENTIALS_DIR"], !directory.isEmpty else { return nil }
        func read(_ key: String) -> String? {
            (try? String(contentsOfFile: "\(directory)/\(key)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                .nilIfEmpty
        }
        if let password = read("password") ?? read("token") {
            return GitCredentials(username: read("username") ?? "x-access-token", password: password)
        }
        throw JobRunnerError("GIT_CREDENTIALS_DIR \(directory) holds neither username+password nor token")
    }

    /// Clone, then the engine's local-sandbox path, all inside the one budget.
    private func execute(_ request: DispatchRequest, report: SandboxExecutionResult, token: CancelToken) async -> (SandboxExecutionResult, Int32) {
        var report = report
        let deadline = Deadline(budgetMs: request.timeoutMs)
        let source = "\(workspace)/source"
        if let failure = await clone(into: source, deadline: deadline) {
            report.state = .failed
            report.error = failure.description
            return (report, 1)
        }
        var request = request
        request.cwd = source
        // Without BASE_SHA, the branch tip as fetched (or the remote's HEAD).
        if request.baseSha == nil { request.baseSha = request.branch.map { "refs/remotes/origin/\($0)" } ?? "HEAD" }
        let remainingMs = deadline.remainingMs
        guard remainingMs >= 1000 else {
            report.state = .failed
            report.error = Self.checkoutTimeout(deadline).description
            return (report, 1)
        }
        request.timeout = Double(remainingMs) / 1000
        let result: DispatchResult
        do {
            result = try await runLocally(request, source: source, token: token)
        } catch {
            report.state = .failed
            report.error = "job-runner could not run the request: \(error)"
            return (report, 1)
        }
        report.state = SandboxExecutionResult.State(rawValue: result.status.rawValue) ?? .failed
        report.artifacts = result.artifacts
        report.error = result.error
        report.output = result.result
        report.usage = result.usage
        return (report, result.status == .completed ? 0 : result.status == .cancelled ? 143 : 1)
    }
}

extension JobRunner {
    /// Clones `REPO_URL` (without a checkout: the sandbox checks out `baseSha`) within the budget; the failure, if any.
    func clone(into source: String, deadline: Deadline) async -> DispatchFailure? {
        let url = environment["REPO_URL"]!
        do {
            try? FileManager.default.removeItem(atPath: source)
            try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
            let credentials = try gitCredentials()
            _ = try await BlockingWork.run("clone", timeout: deadline.remaining) {
                _ = try Repository.cloneWithoutCheckout(from: url, to: source, credentials: credentials)
            }
            return nil
        } catch {
            guard (error as? SandboxError)?.code == .timedOut else { return .checkoutFailed(reason: "cannot clone \(url): \(error)") }
            return Self.checkoutTimeout(deadline, detail: ": clone of \(url)")
        }
    }

    /// The budget ran out during the clone.
    static func checkoutTimeout(_ deadline: Deadline, detail: String = "") -> DispatchFailure {
        .timedOut(.init(subject: "checkout", elapsedMs: deadline.elapsedMs, budgetMs: deadline.budgetMs, moment: .during("checkout"), detail: detail))
    }

    /// The request through the engine's local-sandbox path, with the Job's workspace as state dir and sandbox root.
    func runLocally(_ request: DispatchRequest, source: String, token: CancelToken) async throws -> DispatchResult {
        var configuration = DispatchConfiguration(environment: environment)
        configuration.stateDir = "\(workspace)/state"
        configuration.sandboxRootOverride = "\(workspace)/sandboxes"
        configuration.defaultWorkdir = source
        configuration.agentsDieWithRunner = true
        let store = try SQLiteDispatchStore(
            stateDir: configuration.stateDir,
            inboxDir: configuration.inboxDir,
            leaseSeconds: configuration.leaseSeconds
        )
        // In a pod the pod is the boundary; bubblewrap adds its namespaces when the pod allows them.
        if let problem = AgentRunner.checkAgentUsers(configuration) { throw AgentProcessError(code: .isolationUnavailable, message: problem) }
        let isolation = try Bubblewrap.resolve(configuration.isolation)
        if let problem = AgentRunner.checkAgentUserTools(isolation: isolation.mode) {
            throw AgentProcessError(code: .isolationUnavailable, message: problem)
        }
        logger.info(
            isolation.mode == .bwrap ? "agents run in their own namespaces" : "agents run without namespaces: the pod is the boundary",
            metadata: ["isolation": "\(isolation.mode.rawValue)"]
        )
        let engine = DispatchEngine.standard(
            configuration: configuration,
            store: store,
            logger: logger,
            environment: environment,
            isolation: isolation,
            egress: try resolveEgress(configuration, isolation: isolation, environment: environment)
        )
        return try await engine.runOnce(request, token: token).result
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// The request a Job's environment describes, as the JSON body the validator takes.
struct JobRequestBody: Encodable {
    var requestId: String
    var task: String
    var tool: String
    var executionMode = "sandbox"
    var sandboxBackend = "local"
    var timeout: Double
    var verificationCommands: [String]
    var model: String?
    var workflowId: String?
    var storyId: String?
    var baseSha: String?
    var branch: String?
}

/// A job-runner failure before the agent could run.
struct JobRunnerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// POSTs reports to `RESULT_CALLBACK_URL` with bounded exponential backoff (network errors, 429 and 5xx retried).
/// Each attempt is bounded (a refused or silent endpoint costs seconds, not the Job's deadline); the result is in
/// the pod log either way, where the controller reads it when the Job ends.
struct Callback: Sendable {
    /// Fails a refused connection at once (we back off ourselves) and bounds connecting.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(3), read: .seconds(10))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    let url: String?
    let token: String?
    let logger: Logger

    init(environment: [String: String], logger: Logger) {
        url = environment["RESULT_CALLBACK_URL"].flatMap { $0.isEmpty ? nil : $0 }
        token = environment["RESULT_CALLBACK_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        self.logger = logger
    }

    func post(_ report: SandboxExecutionResult, attempts: Int) async {
        guard let url, let body = try? StoreJSON.encode(report) else { return }
        var delay: Duration = .milliseconds(250)
        for attempt in 1...attempts {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            request.body = .bytes(ByteBuffer(bytes: body))
            var retry = true
            do {
                let response = try await Self.client.execute(request, timeout: .seconds(10))
                _ = try? await response.body.collect(upTo: 1 << 20)
                let code = Int(response.status.code)
                if (200..<300).contains(code) { return }
                retry = code == 429 || code >= 500
                logger.warning("callback refused", metadata: ["status": "\(code)", "attempt": "\(attempt)", "state": "\(report.state.rawValue)"])
            } catch {
                logger.warning("callback failed", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
            }
            guard retry, attempt < attempts, !Task.isCancelled else { return }
            guard (try? await Task.sleep(for: delay)) != nil else { return }
            delay = min(delay * 2, .seconds(8))
        }
    }
}
