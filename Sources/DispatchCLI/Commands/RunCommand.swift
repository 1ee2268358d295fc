import ArgumentParser
import DispatchCore
import Dispatcher
import Execution
import Foundation

/// `dispatch run`: one dispatch in this process, no server needed; prints the terminal result.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one dispatch in-process and print its terminal result.",
        discussion: "Exit codes: 0 completed, 1 failed, 2 invalid request, 130 cancelled (Ctrl-C cancels the agent and still records `cancelled`)."
    )

    @OptionGroup var state: StateOptions

    @Option(help: "Read the request JSON (CONTRACT §1) from FILE ('-' for stdin).")
    var request: String?

    @Option(help: "codex, claude, pi or canary.") var tool: String?
    @Option(help: "The task text.") var task: String?
    @Option(help: "Working directory (default: the current directory).") var cwd: String?
    @Option(help: "host or sandbox.") var mode: String?
    @Option(help: "local or k8s (sandbox mode).") var backend: String?
    @Option(name: .customLong("base-sha"), help: "Commit to check out in sandbox mode.") var baseSha: String?
    @Option(help: "Overall budget in seconds (default 600).") var timeout: Double?
    @Option(help: "Model for the agent.") var model: String?
    @Option(name: .customLong("fallback-model"), help: "A further model to try after a failed attempt (repeatable).")
    var fallbackModels: [String] = []
    @Option(name: .customLong("verify"), help: "A verification command run in the sandbox after the agent (repeatable).")
    var verificationCommands: [String] = []
    @Option(name: .customLong("request-id"), help: "Idempotency key (default: a new unique id).") var requestId: String?
    @Flag(help: "Print only the result document as JSON.") var json = false

    func validate() throws {
        if request != nil, tool != nil || task != nil {
            throw ValidationError("use either --request FILE or --tool/--task, not both")
        }
        if request == nil, tool == nil || task == nil {
            throw ValidationError("missing --tool and --task (or --request FILE)")
        }
    }

    func run() async throws {
        let parsed = try buildRequest()
        let engine: DispatchEngine
        do {
            engine = try await state.engine(createToken: true, agentsDieWithRunner: true, runsAgents: true)
        } catch let error as ValidationError {
            throw error
        } catch {
            Output.error("cannot open the state store: \(error)")
            throw DispatchExit.failed
        }
        let token = CancelToken()
        let outcome: (result: DispatchResult, duplicate: Bool)
        do {
            // The dispatch's trace is sent before the command ends (CONTRACT §11).
            outcome = try await TraceExport.around(logger: CLILogging.logger(level: .warning)) {
                try await SignalTrap.run(
                    trapping: [.sigint, .sigterm, .sighup],
                    token: token,
                    reason: { "cancelled by \($0) to dispatch run" },
                    work: { try await engine.runOnce(parsed, token: token) }
                )
            }
        } catch let error as ValidationError {
            throw error
        } catch let error as RequestValidationError {
            throw ValidationError(error.description)
        } catch let error as DispatchEngineError {
            Output.error("dispatch \(parsed.requestId): \(error)")
            throw DispatchExit.failed
        } catch {
            Output.error("dispatch \(parsed.requestId) could not run: \(error)")
            throw DispatchExit.failed
        }
        if json {
            print(Output.json(outcome.result))
        } else {
            if outcome.duplicate { print("(duplicate requestId: showing the stored result)") }
            print(Output.summary(outcome.result))
        }
        let code = Output.exitCode(for: outcome.result.status)
        if code != .success { throw code }
    }

    /// The request from `--request` or the flags, through the one validator; errors exit 2 naming the field.
    func buildRequest() throws -> DispatchRequest {
        var body: [String: JSONValue]
        if let request {
            let data: Data
            do {
                data = request == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: request))
            } catch {
                throw ValidationError("cannot read --request \(request): \(error.localizedDescription)")
            }
            guard case .object(let object)? = try? JSONValue(parsing: data) else {
                throw ValidationError("invalid body: --request \(request) is not a JSON object")
            }
            body = object
            if let requestId { body["requestId"] = .string(requestId) }
        } else {
            body = ["tool": .string(tool!), "task": .string(task!)]
            body["requestId"] = .string(requestId ?? "run-\(UUID().uuidString.lowercased())")
            if let mode { body["executionMode"] = .string(mode) }
            if let backend { body["sandboxBackend"] = .string(backend) }
            if let baseSha { body["baseSha"] = .string(baseSha) }
            if let timeout { body["timeout"] = .number(timeout) }
            if let model { body["model"] = .string(model) }
            if !fallbackModels.isEmpty { body["fallbackModels"] = .array(fallbackModels.map(JSONValue.string)) }
            if !verificationCommands.isEmpty { body["verificationCommands"] = .array(verificationCommands.map(JSONValue.string)) }
        }
        if let cwd { body["cwd"] = .string(absolute(cwd)) }
        if body["cwd"] == nil { body["cwd"] = .string(FileManager.default.currentDirectoryPath) }
        do {
            return try RequestValidator.validate(body)
        } catch {
            throw ValidationError(error.description)
        }
    }
}
