import ArgumentParser
import DispatchCore
import Dispatcher
import Foundation

/// `dispatch status ID`: the stored result of one request.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the result of a request (exit 0 when found, 1 when unknown)."
    )

    @OptionGroup var state: StateOptions
    @OptionGroup var remote: ServerOptions
    @Argument(help: "The requestId.") var requestId: String
    @Flag(help: "Print a one-line summary instead of the result JSON.") var summary = false
    @Flag(help: "Print only the result document as JSON (the default; for scripts that say so).") var json = false

    func validate() throws {
        if json, summary { throw ValidationError("use either --json or --summary") }
    }

    func run() async throws {
        let result: DispatchResult
        if let client = try remote.client(state: state) {
            let reply = try await client.request(.GET, "/internal/agent-result/\(requestId)")
            guard reply.status == 200, let decoded = try RemoteClient.result(reply) else {
                Output.error(reply.status == 404 ? "unknown requestId \(requestId)" : "status failed (\(reply.status)): \(reply.text)")
                throw DispatchExit.failed
            }
            result = decoded
        } else {
            let engine = try await state.engine()
            guard let record = try await engine.store.record(requestId) else {
                Output.error("unknown requestId \(requestId)")
                throw DispatchExit.failed
            }
            result = try await engine.resolveIfAbandoned(record).result
        }
        print(summary ? Output.summary(result) : Output.json(result))
    }
}

/// `dispatch await ID`: waits for a terminal result.
struct AwaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "await",
        abstract: "Wait until a request is terminal; exit 0 completed, 1 failed or timeout, 130 cancelled."
    )

    @OptionGroup var state: StateOptions
    @OptionGroup var remote: ServerOptions
    @Argument(help: "The requestId.") var requestId: String
    @Option(help: "Give up after SEC seconds.") var timeout: Double?
    @Flag(help: "Print only the result document as JSON.") var json = false

    func run() async throws {
        let limit = timeout.map { Duration.milliseconds(Int($0 * 1000)) }
        let interactive = isatty(STDERR_FILENO) == 1 && !json
        let progress: (String, Duration) -> Void = { status, elapsed in
            let seconds = elapsed.components.seconds
            if interactive {
                FileHandle.standardError.write(Data("\r\(requestId): \(status), \(seconds)s elapsed ".utf8))
            } else if !json {
                FileHandle.standardError.write(Data("\(requestId): \(status) after \(seconds)s\n".utf8))
            }
        }
        let result: DispatchResult?
        if let client = try remote.client(state: state) {
            result = try await client.awaitTerminal(requestId, timeout: limit, progress: progress)
        } else {
            let engine = try await state.engine()
            result = try await Self.awaitLocally(engine, requestId, limit: limit, progress: progress)
        }
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        guard let result else {
            Output.error("unknown requestId \(requestId)")
            throw DispatchExit.failed
        }
        print(json ? Output.json(result) : Output.summary(result))
        guard result.status.isTerminal else {
            Output.error(DispatchFailure.waitTimedOut(seconds: timeout ?? 0, requestId: requestId, status: result.status.rawValue))
            throw DispatchExit.failed
        }
        let code = Output.exitCode(for: result.status)
        if code != .success { throw code }
    }

    static func awaitLocally(
        _ engine: DispatchEngine,
        _ id: String,
        limit: Duration?,
        progress: (String, Duration) -> Void
    ) async throws -> DispatchResult? {
        let clock = ContinuousClock()
        let start = clock.now
        while true {
            let slice = min(limit.map { $0 - (clock.now - start) } ?? .seconds(10), .seconds(10))
            guard let record = try await engine.awaitTerminal(id, timeout: max(slice, .zero), backstop: .milliseconds(50)) else { return nil }
            if record.status.isTerminal { return record.result }
            if let limit, clock.now - start >= limit { return record.result }
            progress(record.status.rawValue, clock.now - start)
        }
    }
}

/// `dispatch cancel ID`: cancels a queued or running request.
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel a request: its process group is terminated and it ends cancelled (exit 0; 1 if already terminal)."
    )

    @OptionGroup var state: StateOptions
    @OptionGroup var remote: ServerOptions
    @Argument(help: "The requestId.") var requestId: String
    @Flag(help: "Print only the result document as JSON (the default).") var json = false

    func run() async throws {
        if let client = try remote.client(state: state) {
            let reply = try await client.request(.POST, "/internal/agent-cancel/\(requestId)")
            switch reply.status {
            case 200:
                print(Output.json(try RemoteClient.result(reply)))
            case 409:
                Output.error("\(requestId) is already \(reply.statusField ?? "terminal")")
                throw DispatchExit.failed
            case 404:
                Output.error("unknown requestId \(requestId)")
                throw DispatchExit.failed
            default:
                Output.error("cancel failed (\(reply.status)): \(reply.text)")
                throw DispatchExit.failed
            }
            return
        }
        // Locally, a request belongs to a `dispatch run` process: SIGTERM makes it cancel and record `cancelled`.
        let engine = try await state.engine()
        guard let stored = try await engine.store.record(requestId) else {
            Output.error("unknown requestId \(requestId)")
            throw DispatchExit.failed
        }
        let record = try await engine.resolveIfAbandoned(stored)
        if record.status.isTerminal {
            Output.error("\(requestId) is already \(record.status.rawValue)")
            throw DispatchExit.failed
        }
        guard let owner = record.owner, owner.kind == .run, !owner.isKnownDead else {
            Output.error(
                "\(requestId) is run by dispatch \(record.owner?.kind.rawValue ?? "?") (pid \(record.owner?.pid ?? 0)); cancel it with --server URL"
            )
            throw DispatchExit.failed
        }
        kill(owner.pid, SIGTERM)
        let final = try await engine.awaitTerminal(requestId, timeout: .seconds(60), backstop: .milliseconds(50))
        print(Output.json(final?.result ?? record.result))
        if final?.status != .cancelled { throw DispatchExit.failed }
    }
}
