import AsyncHTTPClient
import DispatchCore
import DispatchStore
import Dispatcher
import Foundation
import Git
import Logging
import NIOCore
import Sandbox

/// `dispatch job-runner`: the k8s Job entrypoint. Reads the env contract (CONTRACT §5), clones the repo,
/// runs the request through the same sandbox/agent/budget/artifact code as the local backend, prints the
/// result between markers and POSTs it to the callback URL.
public struct JobRunner: Sendable {
    public static let resultStart = "---RESULT_START---"
    public static let resultEnd = "---RESULT_END---"

    let environment: [String: String]
    let workspace: String
    let logger: Logger

    public init(environment: [String: String], workspace: String, logger: Logger) {
        self.environment = environment
        self.workspace = workspace
        self.logger = logger
    }

    /// The variables the runner cannot work without.
    static let required = ["REQUEST_ID", "REPO_URL", "AGENT_PROGRAM", "TIMEOUT_SECONDS", "TASK_PROMPT_B64"]

    /// Runs to a terminal report; never throws. Exit code: 0 completed, 1 failed, 143 cancelled.
    public func run(token: CancelToken) async -> (report: SandboxExecutionResult, exitCode: Int32) {
        let startedAt = Date()
        let requestId = environment["REQUEST_ID"].flatMap { $0.isEmpty ? nil : $0 } ?? "unknown"
        let job = JobInfo(
            name: environment["JOB_NAME"] ?? "", namespace: environment["JOB_NAMESPACE"] ?? "",
            podName: environment["HOSTNAME"])
        var report = SandboxExecutionResult(requestId: requestId, state: .running, startedAt: ISO8601.string(startedAt), job: job)
        let callback = Callback(environment: environment, logger: logger)

        let outcome: (SandboxExecutionResult, Int32)
        do {
            let request = try parseRequest()
            // `running` goes out beside the work: an unreachable callback must not delay the agent.
            let running = Task { [report] in await callback.post(report, attempts: 3) }
            outcome = await execute(request, report: report, token: token)
            running.cancel()
        } catch {
            report.state = .failed
            report.error = "\(error)"
            outcome = (report, 1)
        }
        var final = outcome.0
        final.completedAt = ISO8601.string(Date())
        final.durationMs = Int(Date().timeIntervalSince(startedAt) * 1000)
        let document = String(decoding: (try? StoreJSON.encode(final)) ?? Data(), as: UTF8.self)
        FileHandle.standardOutput.write(Data("\(Self.resultStart)\n\(document)\n\(Self.resultEnd)\n".utf8))
        // Detached: after SIGTERM this task is cancelled, and a cancelled task's requests are dropped unsent.
        await Task.detached { await callback.post(final, attempts: 5) }.value
        return (final, outcome.1)
    }

    /// The request the env contract describes; an error names every missing or invalid variable.
    func parseRequest() throws -> DispatchRequest {
        let missing = Self.required.filter { (environment[$0] ?? "").isEmpty }
        guard missing.isEmpty else {
            throw JobRunnerError("missing environment variable\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", "))")
        }
        guard let taskData = Data(base64Encoded: environment["TASK_PROMPT_B64"]!), let task = String(data: taskData, encoding: .utf8) else {
            throw JobRunnerError("TASK_PROMPT_B64 is not base64 of UTF-8 text")
        }
        var verification: [String] = []
        if let encoded = environment["VERIFICATION_COMMANDS_B64"], !encoded.isEmpty {
            guard let data = Data(base64Encoded: encoded), let commands = try? JSONSerialization.jsonObject(with: data) as? [String] else {
                throw JobRunnerError("VERIFICATION_COMMANDS_B64 is not base64 of a JSON array of strings")
            }
            verification = commands
        }
        var body: [String: Any] = [
            "requestId": environment["REQUEST_ID"]!, "task": task, "tool": environment["AGENT_PROGRAM"]!,
            "executionMode": "sandbox", "sandboxBackend": "local", "verificationCommands": verification,
        ]
        guard let timeout = Double(environment["TIMEOUT_SECONDS"]!) else { throw JobRunnerError("TIMEOUT_SECONDS is not a number") }
        body["timeout"] = timeout
        for (variable, field) in [("AGENT_MODEL", "model"), ("WORKFLOW_ID", "workflowId"), ("STORY_ID", "storyId"), ("BASE_SHA", "baseSha"),
                                  ("REPO_BRANCH", "branch")] {
            if let value = environment[variable], !value.isEmpty { body[field] = value }
        }
        do {
            return try RequestValidator.validate(body)
        } catch {
            throw JobRunnerError("invalid job environment: \(error)")
        }
    }

    /// Clone, then the engine's local-sandbox path, all inside the one budget.
    private func execute(_ request: DispatchRequest, report: SandboxExecutionResult, token: CancelToken) async -> (SandboxExecutionResult, Int32) {
        var report = report
        let deadline = Deadline(budgetMs: request.timeoutMs)
        let source = "\(workspace)/source"
        let url = environment["REPO_URL"]!
        do {
            try? FileManager.default.removeItem(atPath: source)
            try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
            _ = try await BlockingWork.run("clone", timeout: deadline.remaining) { _ = try Repository.cloneWithoutCheckout(from: url, to: source) }
        } catch {
            report.state = .failed
            report.error = (error as? SandboxError)?.code == .timedOut
                ? "checkout timed out after \(deadline.elapsedMs)ms (budget \(deadline.budgetMs)ms) during checkout: clone of \(url)"
                : "checkout failed: cannot clone \(url): \(error)"
            return (report, 1)
        }
        var request = request
        request.cwd = source
        // Without BASE_SHA, the branch tip as fetched (or the remote's HEAD).
        if request.baseSha == nil { request.baseSha = request.branch.map { "refs/remotes/origin/\($0)" } ?? "HEAD" }
        let remainingMs = deadline.remainingMs
        guard remainingMs >= 1000 else {
            report.state = .failed
            report.error = "checkout timed out after \(deadline.elapsedMs)ms (budget \(deadline.budgetMs)ms) during checkout"
            return (report, 1)
        }
        request.timeout = Double(remainingMs) / 1000
        var configuration = DispatchConfiguration(environment: environment)
        configuration.stateDir = "\(workspace)/state"
        configuration.sandboxRootOverride = "\(workspace)/sandboxes"
        configuration.defaultWorkdir = source
        let result: DispatchResult
        do {
            let store = try DispatchStore(stateDir: configuration.stateDir, inboxDir: configuration.inboxDir)
            let engine = DispatchEngine(configuration: configuration, store: store, logger: logger, environment: environment)
            result = try await engine.runOnce(request, token: token).result
        } catch {
            report.state = .failed
            report.error = "job-runner could not run the request: \(error)"
            return (report, 1)
        }
        report.state = SandboxExecutionResult.State(rawValue: result.status.rawValue) ?? .failed
        report.artifacts = result.artifacts
        report.error = result.error
        report.output = result.result
        return (report, result.status == .completed ? 0 : result.status == .cancelled ? 143 : 1)
    }
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
