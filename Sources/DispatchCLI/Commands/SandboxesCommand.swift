import ArgumentParser
import DispatchCore
import DispatchStore
import Dispatcher
import Foundation
import Sandbox

/// `dispatch sandboxes`: the local sandbox registry and retention.
struct SandboxesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandboxes",
        abstract: "List and clean up local sandboxes.",
        subcommands: [List.self, Cleanup.self, Janitor.self]
    )

    /// The `--json` row of `sandboxes list` (CONTRACT §4).
    struct Row: Codable {
        var sandboxId: String
        var requestId: String
        var state: String
        var path: String
        var baseSha: String
        var createdAt: String
        var updatedAt: String
        var cleanupAfter: String?

        init(_ record: SandboxRecord) {
            sandboxId = record.sandboxId
            requestId = record.requestId
            state = record.state.rawValue
            path = record.path
            baseSha = record.baseSha
            createdAt = record.createdAt
            updatedAt = record.updatedAt
            cleanupAfter = record.cleanupAfter
        }
    }

    /// Resolves dispatches whose runner died, then reconciles sandbox rows, so nothing terminal is shown as running.
    static func reconciled(_ engine: DispatchEngine) async throws -> SandboxJanitor {
        for row in try await engine.store.sandboxes(state: .running) {
            if let record = try await engine.store.record(row.requestId) { _ = try await engine.resolveIfAbandoned(record) }
        }
        let janitor = SandboxJanitor(store: engine.store, runsDirectory: "\(engine.configuration.stateDir)/runs")
        _ = try await janitor.reconcile()
        return janitor
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List sandboxes, newest first.")
        @OptionGroup var state: StateOptions
        @Option(name: .customLong("state"), help: "Only sandboxes in this state (running, completed, failed, cancelled, removed).")
        var filter: String?
        @Flag(help: "Print a JSON array.") var json = false

        func run() async throws {
            var wanted: SandboxRecord.State?
            if let filter {
                guard let parsed = SandboxRecord.State(rawValue: filter) else {
                    throw ValidationError("invalid --state \(filter): must be one of running, completed, failed, cancelled, removed")
                }
                wanted = parsed
            }
            let engine = try await state.engine()
            _ = try await SandboxesCommand.reconciled(engine)
            let rows = try await engine.store.sandboxes(state: wanted).map(Row.init)
            if json {
                print(Output.json(rows))
            } else {
                for row in rows {
                    print("\(row.sandboxId)\t\(row.state)\t\(row.requestId)\t\(row.baseSha.prefix(12))\t\(row.path)")
                }
            }
        }
    }

    struct Cleanup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cleanup",
            abstract: "Remove sandboxes (running ones only with --force)."
        )
        @OptionGroup var state: StateOptions
        @Option(name: .customLong("request-id")) var requestId: String?
        @Option(name: .customLong("sandbox-id")) var sandboxId: String?
        @Flag(help: "Sandboxes past their retention (completed/cancelled 24 h, failed 72 h).") var expired = false
        @Flag(name: .customLong("all-terminal"), help: "Every sandbox that is not running.") var allTerminal = false
        @Flag(help: "Also remove running sandboxes.") var force = false
        @Flag(name: .customLong("dry-run"), help: "Show what would be removed; change nothing.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            let chosen = [requestId != nil, sandboxId != nil, expired, allTerminal].filter { $0 }.count
            guard chosen == 1 else {
                throw ValidationError("choose exactly one of --request-id, --sandbox-id, --expired, --all-terminal")
            }
        }

        func run() async throws {
            let selection: SandboxJanitor.Selection =
                if let requestId { .requestId(requestId) } else if let sandboxId { .sandboxId(sandboxId) } else if expired { .expired } else {
                    .allTerminal
                }
            let engine = try await state.engine()
            let janitor = try await SandboxesCommand.reconciled(engine)
            let actions = try await janitor.cleanup(selection, force: force, dryRun: dryRun)
            SandboxesCommand.report(actions, json: json)
            if actions.contains(where: { $0.action == "failed" }) { throw DispatchExit.failed }
        }
    }

    struct Janitor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "janitor",
            abstract: "Reconcile the registry with the disk and remove expired sandboxes."
        )
        @OptionGroup var state: StateOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let engine = try await state.engine()
            let janitor = try await SandboxesCommand.reconciled(engine)
            let actions = try await janitor.sweep()
            SandboxesCommand.report(actions, json: json)
            if actions.contains(where: { $0.action == "failed" }) { throw DispatchExit.failed }
        }
    }

    static func report(_ actions: [SandboxJanitor.Action], json: Bool) {
        if json {
            print(Output.json(actions))
        } else if actions.isEmpty {
            print("nothing to do")
        } else {
            for action in actions { print("\(action.action)\t\(action.sandboxId)\t\(action.detail)") }
        }
    }
}
