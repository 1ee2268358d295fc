import Foundation

/// The real agent CLIs the tests run (CONTRACT §1), installed by `make test-deps` (`canaries/install_real_clis.py`)
/// into `DISPATCH_REAL_CLIS` (default `/var/cache/agent-dispatch/clis`). `make test` sets
/// `DISPATCH_REAL_CLI_TESTS=required`: then a missing CLI fails its tests instead of skipping them.
package enum RealCLIs {
    package static var directory: String {
        ProcessInfo.processInfo.environment["DISPATCH_REAL_CLIS"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/cache/agent-dispatch/clis"
    }

    /// Whether a missing CLI is a failure (under `make test`) rather than a reason to skip.
    package static var required: Bool { ProcessInfo.processInfo.environment["DISPATCH_REAL_CLI_TESTS"] == "required" }

    /// codex of `version` (`0.147.0`, `0.142.5`).
    package static func codex(_ version: String) -> String { "\(directory)/codex-\(version)/codex" }

    /// The Claude Code that `claude-agent-sdk` bundles.
    package static var claude: String { "\(directory)/claude-sdk-0.2.189/claude" }

    /// Whether the tests can run: every CLI is there (or they are required, and then their absence fails them).
    package static var available: Bool {
        required || [codex("0.147.0"), codex("0.142.5"), claude].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// A model stub (`canaries/model_stub_openai.py` for codex, `canaries/model_stub_anthropic.py` for Claude Code) on
/// loopback, answering by the `stub:` markers in the task; stopped with the value.
package final class ModelStub: Sendable {
    package let port: Int
    /// Every request it got, one JSON object a line.
    package let logPath: String
    private let process: RunningCommand

    /// Starts the stub `script` (`openai` or `anthropic`) with its files in `dir`.
    package init(_ kind: String, in dir: TempDir) throws {
        let portFile = dir.child("stub-\(kind).port")
        logPath = dir.child("stub-\(kind).jsonl")
        (process, port) = try LoopbackScript.start("model_stub_\(kind).py", ["--port", "0", "--log", logPath], portFile: portFile)
    }

    /// `http://127.0.0.1:PORT`.
    package var url: String { "http://127.0.0.1:\(port)" }

    deinit {
        kill(process.pid, SIGKILL)
        process.wait()
    }
}
