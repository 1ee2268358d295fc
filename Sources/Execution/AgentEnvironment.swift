import DispatchCore
import Foundation

/// The curated environment agents get: a whitelist of the runner's own variables plus dispatch identity.
///
/// Secrets of the runner itself (`DISPATCH_TOKEN`, the k8s callback token) never reach an agent.
package enum AgentEnvironment {
    /// Variables passed through by exact name.
    static let passthroughNames: Set<String> = [
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
        "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    ]

    /// Variables passed through by prefix: agent credentials and settings, and the fake agents' steering.
    static let passthroughPrefixes = ["OPENAI_", "ANTHROPIC_", "CODEX_", "CLAUDE_", "PI_", "GEMINI_", "FAKE_AGENT_"]

    /// Builds the agent environment for `request` from `base`.
    package static func build(
        request: DispatchRequest,
        base: [String: String],
        extraNames: [String],
        extras: [String: String]
    ) -> [String: String] {
        var env: [String: String] = [:]
        let extraSet = Set(extraNames)
        for (name, value) in base
        where passthroughNames.contains(name) || extraSet.contains(name) || passthroughPrefixes.contains(where: name.hasPrefix) {
            env[name] = value
        }
        if env["PATH"] == nil { env["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        env["CI"] = "true"
        env["TERM"] = "dumb"
        env["NO_COLOR"] = "1"
        env["DISPATCH_REQUEST_ID"] = request.requestId
        env["DISPATCH_TOOL"] = request.tool.rawValue
        if let workflowId = request.workflowId { env["DISPATCH_WORKFLOW_ID"] = workflowId }
        if let storyId = request.storyId { env["DISPATCH_STORY_ID"] = storyId }
        if let sessionId = request.sessionId { env["DISPATCH_SESSION_ID"] = sessionId }
        for (name, value) in extras { env[name] = value }
        return env
    }

    /// Variables that would send a CLI to a shared home instead of the run's own (CONTRACT §7): dropped when a run
    /// has its own `HOME`, so every CLI keeps its state and transcripts there.
    static let sharedHomeVariables = [
        "CODEX_HOME", "CLAUDE_CONFIG_DIR", "PI_CODING_AGENT_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
    ]

    /// `env` with `HOME` set to the run's own home and nothing pointing elsewhere.
    /// `TMPDIR` too is the run's own (``AgentHome/temporaryDirectory``): what a CLI leaves in its temp dir (Claude
    /// Code's probes and sockets) stays with the run and goes with it, never in the machine's `/tmp`.
    package static func withHome(_ env: [String: String], home: String) -> [String: String] {
        var env = env
        for name in sharedHomeVariables { env.removeValue(forKey: name) }
        env["HOME"] = home
        env["TMPDIR"] = AgentHome.temporaryDirectory(of: home)
        return env
    }

    /// The marker every process of a dispatch carries, used to find escaped descendants.
    package static func marker(requestId: String) -> String { "DISPATCH_REQUEST_ID=\(requestId)" }
}
