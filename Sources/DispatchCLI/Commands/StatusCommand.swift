import ArgumentParser
import DispatchCore
import Dispatcher
import Foundation

/// `dispatch status ID`: the stored result of one request.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Print the result of a request (exit 0 when found, 1 when unknown).")

    @OptionGroup var state: StateOptions
    @Argument(help: "The requestId.") var requestId: String
    @Flag(help: "Print a one-line summary instead of the result JSON.") var summary = false

    func run() async throws {
        let engine = try state.engine()
        guard var record = try await engine.store.record(requestId) else {
            Output.error("unknown requestId \(requestId)")
            throw DispatchExit.failed
        }
        record = try await engine.resolveIfAbandoned(record)
        print(summary ? Output.summary(record.result) : Output.json(record.result))
    }
}

/// `dispatch await ID`: waits for a terminal result.
struct AwaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "await", abstract: "Wait until a request is terminal; exit 0 completed, 1 failed or timeout, 130 cancelled.")

    @OptionGroup var state: StateOptions
    @Argument(help: "The requestId.") var requestId: String
    @Option(help: "Give up after SEC seconds.") var timeout: Double?
    @Flag(help: "Print only the result document as JSON.") var json = false

    func run() async throws {
        let engine = try state.engine()
        guard let record = try await engine.awaitTerminal(requestId, timeout: timeout.map { .milliseconds(Int($0 * 1000)) }) else {
            Output.error("unknown requestId \(requestId)")
            throw DispatchExit.failed
        }
        print(json ? Output.json(record.result) : Output.summary(record.result))
        guard record.status.isTerminal else {
            Output.error("timed out after \(timeout ?? 0)s waiting for \(requestId) (still \(record.status.rawValue))")
            throw DispatchExit.failed
        }
        let code = Output.exitCode(for: record.status)
        if code != .success { throw code }
    }
}

/// `dispatch list`: recent requests, newest first.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List requests, newest first.")

    @OptionGroup var state: StateOptions
    @Option(help: "Only requests in this status.") var status: String?
    @Option(help: "At most N requests.") var limit = 50
    @Flag(help: "Print JSON.") var json = false

    struct Item: Codable {
        var requestId: String
        var status: DispatchStatus
        var tool: AgentTool
        var startedAt: String?
        var updatedAt: String
    }

    func run() async throws {
        var filter: DispatchStatus?
        if let status {
            guard let parsed = DispatchStatus(rawValue: status) else {
                throw ValidationError("invalid --status \(status): must be one of queued, running, completed, failed, cancelled")
            }
            filter = parsed
        }
        let engine = try state.engine()
        var items: [Item] = []
        for var record in try await engine.store.list(status: filter, limit: limit) {
            record = try await engine.resolveIfAbandoned(record)
            items.append(Item(requestId: record.requestId, status: record.status, tool: record.request.tool,
                              startedAt: record.result.startedAt, updatedAt: record.result.updatedAt))
        }
        if json {
            print(Output.json(items))
        } else {
            for item in items {
                print("\(item.requestId)\t\(item.status.rawValue)\t\(item.tool.rawValue)\t\(item.updatedAt)")
            }
        }
    }
}

/// `dispatch logs ID`: the agent's captured output.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a request's agent output.")

    @OptionGroup var state: StateOptions
    @Argument(help: "The requestId.") var requestId: String
    @Flag(help: "Keep printing new output until the request is terminal.") var follow = false
    @Flag(help: "Show stderr instead of stdout.") var stderr = false

    func run() async throws {
        let engine = try state.engine()
        var offset: UInt64 = 0
        var path: String?
        while true {
            guard let record = try await engine.store.record(requestId) else {
                Output.error("unknown requestId \(requestId)")
                throw DispatchExit.failed
            }
            if let logs = record.result.logs {
                let current = stderr ? logs.stderrPath : logs.stdoutPath
                if current != path {
                    path = current
                    offset = 0
                }
                offset = LogCopier.copy(from: current, offset: offset)
            }
            if !follow || record.status.isTerminal { break }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

/// Copies a file's bytes from an offset to stdout.
enum LogCopier {
    static func copy(from path: String, offset: UInt64) -> UInt64 {
        guard let handle = FileHandle(forReadingAtPath: path) else { return offset }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        let data = (try? handle.readToEnd()) ?? Data()
        FileHandle.standardOutput.write(data)
        return offset + UInt64(data.count)
    }
}
