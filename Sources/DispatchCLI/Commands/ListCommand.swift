import AgentProcess
import ArgumentParser
import DispatchCore
import Dispatcher
import Foundation

/// `dispatch list`: recent requests, newest first.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List requests, newest first.")

    @OptionGroup var state: StateOptions
    @OptionGroup var remote: ServerOptions
    @Option(help: "Only requests in this status.") var status: String?
    @Option(help: "At most N requests.") var limit = 50
    @Flag(help: "Print JSON.") var json = false

    struct Item: Codable {
        var requestId: String
        var status: String
        var tool: String
        var startedAt: String?
        var updatedAt: String
    }

    /// One page of `GET /internal/agent-dispatches`, as far as the listing shows it.
    struct Page: Decodable {
        var items: [Item]
    }

    func run() async throws {
        if let status, DispatchStatus(rawValue: status) == nil {
            throw ValidationError("invalid --status \(status): must be one of queued, running, completed, failed, cancelled")
        }
        var items: [Item] = []
        if let client = try remote.client(state: state) {
            let query = "limit=\(limit)" + (status.map { "&status=\($0)" } ?? "")
            let reply = try await client.request(.GET, "/internal/agent-dispatches?\(query)")
            guard reply.status == 200, let page = reply.decode(Page.self) else {
                Output.error("list failed (\(reply.status)): \(reply.text)")
                throw DispatchExit.failed
            }
            items = page.items
        } else {
            let engine = try await state.engine()
            for stored in try await engine.store.list(status: status.flatMap(DispatchStatus.init(rawValue:)), limit: limit) {
                let record = try await engine.resolveIfAbandoned(stored)
                items.append(
                    Item(
                        requestId: record.requestId,
                        status: record.status.rawValue,
                        tool: record.request.tool.rawValue,
                        startedAt: record.result.startedAt,
                        updatedAt: record.result.updatedAt
                    )
                )
            }
        }
        if json {
            print(Output.json(items))
        } else {
            for item in items { print("\(item.requestId)\t\(item.status)\t\(item.tool)\t\(item.updatedAt)") }
        }
    }
}

/// `dispatch logs ID`: the agent's captured output.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a request's agent output.")

    @OptionGroup var state: StateOptions
    @OptionGroup var remote: ServerOptions
    @Argument(help: "The requestId.") var requestId: String
    @Flag(help: "Keep printing new output until the request is terminal.") var follow = false
    @Flag(help: "Show stderr instead of stdout.") var stderr = false

    func run() async throws {
        if let client = try remote.client(state: state) {
            let path = "/internal/agent-logs/\(requestId)?stream=\(stderr ? "stderr" : "stdout")&follow=\(follow ? 1 : 0)"
            let status = try await client.stream(path)
            if status != 200 {
                Output.error(status == 404 ? "unknown requestId \(requestId)" : "logs failed (\(status))")
                throw DispatchExit.failed
            }
            return
        }
        let engine = try await state.engine()
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
            // Woken by a write to the log (the runtime's watch on it), or after a second: a new attempt, the end.
            let wakeup = Wakeup()
            let watch = path.map { ProcessRuntime.shared.watchFile($0) { wakeup.signal() } }
            var info = stat()
            let grown = path.map { stat($0, &info) == 0 && UInt64(info.st_size) > offset } ?? false
            if !grown { await wakeup.wait(until: .now + .seconds(1)) }
            if let watch { ProcessRuntime.shared.cancel(watch) }
            try Task.checkCancellation()
        }
    }
}

/// Copies a file's bytes from an offset to stdout.
enum LogCopier {
    static func copy(from path: String, offset: UInt64) -> UInt64 {
        guard let handle = FileHandle(forReadingAtPath: path) else { return offset }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        var offset = offset
        // 1 MiB at a time: memory stays flat whatever the log's size.
        while let data = try? handle.read(upToCount: 1 << 20), !data.isEmpty {
            FileHandle.standardOutput.write(data)
            offset += UInt64(data.count)
        }
        return offset
    }
}
