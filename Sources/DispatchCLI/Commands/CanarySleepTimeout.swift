import ArgumentParser
import DispatchCore
import Dispatcher
import Execution
import Foundation
import Git

extension CanaryCommand {
    /// The timeout proof: the sleep canary in a local sandbox with a short budget.
    struct SleepTimeout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sleep-timeout",
            abstract: "Check that a sleeping agent is killed at the budget, ends failed saying timed out, and leaves nothing running."
        )

        @OptionGroup var state: StateOptions
        @OptionGroup var remote: ServerOptions
        @Option(help: "Budget in seconds.") var timeout = 5
        @Option(help: "How long the canary sleeps, in seconds.") var sleep = 120
        @Option(help: "Git repository to sandbox (default: a small repo the canary creates under the state dir).") var repo: String?

        func run() async throws {
            let configuration = state.configuration()
            let repoPath = try repo.map(absolute) ?? Self.canaryRepo(in: configuration.stateDir)
            let requestId = "canary-sleep-timeout-\(Int(Date().timeIntervalSince1970))-\(UInt16.random(in: 0...UInt16.max))"
            let request = CanaryChecks.sleepTimeoutRequest(requestId: requestId, repo: repoPath, timeoutSeconds: timeout, sleepSeconds: sleep)
            let clock = ContinuousClock()
            let start = clock.now
            let result: DispatchResult?
            let sandboxState: String?
            var running: [String] = []
            if let client = try remote.client(state: state) {
                // The registry is the server's; `cleanupAfter` is set only once the server finished the sandbox row.
                result = try await client.dispatchAndAwait(request, timeout: .seconds(Double(timeout + 60)))
                sandboxState = result?.localSandbox?.cleanupAfter != nil ? result?.status.rawValue : "running"
            } else {
                let engine = try await state.engine(runsAgents: true)
                let local = try await engine.runOnce(request, token: CancelToken()).result
                result = local
                sandboxState = try await local.localSandbox.asyncMap { try await engine.store.sandbox($0.sandboxId) }??.state.rawValue
                running = try await engine.store.sandboxes(state: .running).map(\.sandboxId)
            }
            let wallMs = Int((clock.now - start).milliseconds)
            let checks = await CanaryChecks.sleepTimeout(
                result,
                wallMs: wallMs,
                timeoutSeconds: timeout,
                killGraceMs: configuration.killGraceMs,
                sandboxState: sandboxState,
                runningSandboxIds: running
            )
            let report = CanaryReport(scenario: "sleep-timeout", requestId: requestId, wallMs: wallMs, checks: checks, result: result)
            print(Output.json(report, pretty: true))
            if !report.ok { throw DispatchExit.failed }
        }

        /// A one-commit repository the canary owns, created with libgit2 (no git CLI needed), beside the state dir:
        /// inside it, where agents must see nothing, a work dir is refused (CONTRACT §7).
        static func canaryRepo(in stateDir: String) throws -> String {
            let path = "\(stateDir.hasSuffix("/") ? String(stateDir.dropLast()) : stateDir).canary-repo"
            if (try? Repository(path: path).headCommit()) != nil { return path }
            try? FileManager.default.removeItem(atPath: path)
            let repo = try Repository.create(at: path)
            try "agent-dispatch canary repository\n".write(toFile: "\(path)/README.md", atomically: true, encoding: .utf8)
            try repo.commitAll(message: "canary repository")
            return path
        }
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
