import AgentProcess
import DispatchCore
import Foundation

/// What each agent CLI must accept for the command line CONTRACT §1 gives it, checked against its own help
/// (``CLIProbe``): a binary that lacks one fails its dispatch before it is spawned, saying which and why.
package enum CLIRequirements {
    /// The options the command line of `tool` uses in every attempt.
    static func always(_ tool: AgentTool) -> [String] {
        switch tool {
        case .codex: ["--json"]
        case .claude: ["-p", "--dangerously-skip-permissions", "--output-format", "--verbose"]
        case .pi: ["-p", "--no-session", "--mode", "--no-extensions"]
        case .canary: []
        }
    }

    /// The options an attempt of `request` uses beside those: codex's sandbox flag (by isolation) and
    /// `--skip-git-repo-check` outside a repository, the model option when a model is named, pi's `--no-tools`.
    package static func chosen(_ request: DispatchRequest, isolated: Bool, outsideGitRepository: Bool) -> [String] {
        var options = always(request.tool)
        let model = request.modelAttempts.contains { $0 != nil }
        switch request.tool {
        case .codex:
            options.append(isolated ? CodexAdapter.bypassSandbox : "--sandbox")
            if outsideGitRepository { options.append(CodexAdapter.skipGitRepoCheck) }
            if model { options.append("-m") }
        case .claude:
            if model { options.append("--model") }
        case .pi:
            if request.readFiles != true { options.append("--no-tools") }
            if model { options.append("--models") }
        case .canary:
            break
        }
        return options
    }

    /// Why `probe` cannot run `request`'s attempts, in words; `nil` when it can.
    package static func problem(_ probe: CLIProbe, request: DispatchRequest, isolated: Bool, outsideGitRepository: Bool) -> String? {
        let name = request.tool.rawValue
        if let problem = probe.problem { return "\(name) at \(probe.path) cannot be used: \(problem)" }
        let missing = chosen(request, isolated: isolated, outsideGitRepository: outsideGitRepository).filter { !probe.accepts($0) }
        guard let first = missing.first else { return nil }
        let version = probe.version.map { " (\($0))" } ?? ""
        let why: String
        switch first {
        case CodexAdapter.bypassSandbox: why = "which runs it inside this runner's isolation, where its own sandbox cannot nest"
        case "--sandbox": why = "which gives it its sandbox profile without this runner's isolation (never --full-auto)"
        case CodexAdapter.skipGitRepoCheck: why = "which it needs to run in a work dir outside a git repository"
        default: why = "which its command line needs (CONTRACT §1)"
        }
        return "\(name) at \(probe.path)\(version) does not accept \(missing.joined(separator: ", ")), \(why)"
    }
}
