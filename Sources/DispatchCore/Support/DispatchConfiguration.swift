import Foundation

/// Runtime configuration (CONTRACT §6). Built from the environment; CLI flags then override fields.
public struct DispatchConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var stateDir: String
    /// `DISPATCH_INBOX_DIR` or `--inbox-dir`; `nil` means `<stateDir>/inbox`.
    public var inboxDirOverride: String?
    /// `DISPATCH_SANDBOX_ROOT`; `nil` means `<stateDir>/sandboxes`.
    public var sandboxRootOverride: String?
    public var token: String?
    public var tokenFile: String?
    public var maxConcurrent: Int
    public var defaultBackend: SandboxBackend
    /// Working directory for requests without `cwd`.
    public var defaultWorkdir: String
    /// Agent programs by tool (name on PATH or absolute path).
    public var codexBin: String
    public var claudeBin: String
    public var piBin: String
    /// SIGTERM → SIGKILL grace for agent process groups.
    public var killGraceMs: Int
    /// How long an agent that printed its final event may take to exit before it is ended as completed.
    public var completionGraceMs: Int
    public var k8sNamespace: String
    public var k8sImage: String?
    public var k8sSecret: String?
    public var callbackURL: String?
    public var kubeconfig: String?
    /// `DISPATCH_MAX_LOG_BYTES`: the most an attempt may write to stdout or to stderr (default 1 GiB).
    public var maxLogBytes: Int64
    /// `DISPATCH_MAX_PATCH_FILE_BYTES`: files larger than this stay out of the patch (default 64 MiB).
    public var maxPatchFileBytes: Int64
    /// `DISPATCH_LEASE_SECONDS`: how long a runner's lease on its rows holds between renewals (default 15).
    public var leaseSeconds: Int
    /// `DISPATCH_STORE_RETRY_SECONDS`: how long a terminal store write is retried before it counts as failed.
    public var storeRetrySeconds: Double
    /// Whether agents and verification commands die with this runner process, however it dies. Set by
    /// `dispatch run` and the job-runner (CONTRACT §4: an agent never outlives its `dispatch run`); not by `serve`.
    public var agentsDieWithRunner = false
    /// `DISPATCH_ALLOWED_HOSTS`: Host names a loopback listener accepts besides this machine's.
    public var allowedHosts: [String]
    /// `DISPATCH_K8S_GIT_SECRET`: the Secret with git credentials (`username`+`password`, or `token`) Jobs mount.
    public var k8sGitSecret: String?
    /// Extra environment variable names passed through to agents (`DISPATCH_AGENT_ENV`, comma-separated).
    public var agentEnvPassthrough: [String]

    /// Reads the contract's environment variables, applying defaults.
    public init(environment env: [String: String] = ProcessInfo.processInfo.environment) {
        let home = env["HOME"] ?? NSHomeDirectory()
        host = env["DISPATCH_HOST"].nonEmpty ?? "127.0.0.1"
        port = env["DISPATCH_PORT"].flatMap { Int($0) } ?? 3111
        stateDir = env["DISPATCH_STATE_DIR"].nonEmpty ?? "\(home)/.local/state/agent-dispatch"
        inboxDirOverride = env["DISPATCH_INBOX_DIR"].nonEmpty
        sandboxRootOverride = env["DISPATCH_SANDBOX_ROOT"].nonEmpty
        token = env["DISPATCH_TOKEN"].nonEmpty
        tokenFile = env["DISPATCH_TOKEN_FILE"].nonEmpty
        maxConcurrent =
            env["DISPATCH_MAX_CONCURRENT"].flatMap { Int($0) }.map { max(1, $0) }
            ?? ProcessInfo.processInfo.activeProcessorCount
        defaultBackend = env["DISPATCH_DEFAULT_BACKEND"].flatMap(SandboxBackend.init(rawValue:)) ?? .local
        defaultWorkdir = env["DISPATCH_DEFAULT_WORKDIR"].nonEmpty ?? FileManager.default.currentDirectoryPath
        codexBin = env["DISPATCH_CODEX_BIN"].nonEmpty ?? "codex"
        claudeBin = env["DISPATCH_CLAUDE_BIN"].nonEmpty ?? "claude"
        piBin = env["DISPATCH_PI_BIN"].nonEmpty ?? "pi"
        killGraceMs = env["DISPATCH_KILL_GRACE_MS"].flatMap { Int($0) }.map { max(0, $0) } ?? 5000
        completionGraceMs = env["DISPATCH_COMPLETION_GRACE_MS"].flatMap { Int($0) }.map { max(0, $0) } ?? 2000
        k8sNamespace = env["DISPATCH_K8S_NAMESPACE"].nonEmpty ?? "default"
        k8sImage = env["DISPATCH_K8S_IMAGE"].nonEmpty
        k8sSecret = env["DISPATCH_K8S_SECRET"].nonEmpty
        callbackURL = env["DISPATCH_CALLBACK_URL"].nonEmpty
        kubeconfig = env["KUBECONFIG"].nonEmpty
        maxLogBytes = env["DISPATCH_MAX_LOG_BYTES"].flatMap { Int64($0) }.map { max(1, $0) } ?? (1 << 30)
        maxPatchFileBytes = env["DISPATCH_MAX_PATCH_FILE_BYTES"].flatMap { Int64($0) }.map { max(0, $0) } ?? (64 << 20)
        leaseSeconds = env["DISPATCH_LEASE_SECONDS"].flatMap { Int($0) }.map { max(1, $0) } ?? 15
        storeRetrySeconds = env["DISPATCH_STORE_RETRY_SECONDS"].flatMap { Double($0) }.map { max(0, $0) } ?? 10
        allowedHosts = (env["DISPATCH_ALLOWED_HOSTS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        k8sGitSecret = env["DISPATCH_K8S_GIT_SECRET"].nonEmpty
        agentEnvPassthrough = (env["DISPATCH_AGENT_ENV"] ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
    }

    /// Where inbox result files go.
    public var inboxDir: String { inboxDirOverride ?? "\(stateDir)/inbox" }

    /// Where local sandboxes are created.
    public var sandboxRoot: String { sandboxRootOverride ?? "\(stateDir)/sandboxes" }

    /// The program configured for `tool` (canaries run `/bin/sh`).
    public func program(for tool: AgentTool) -> String {
        switch tool {
        case .codex: codexBin
        case .claude: claudeBin
        case .pi: piBin
        case .canary: "/bin/sh"
        }
    }

    /// The environment variable that overrides the program of `tool`.
    public static func binVariable(for tool: AgentTool) -> String? {
        switch tool {
        case .codex: "DISPATCH_CODEX_BIN"
        case .claude: "DISPATCH_CLAUDE_BIN"
        case .pi: "DISPATCH_PI_BIN"
        case .canary: nil
        }
    }
}

extension Optional where Wrapped == String {
    /// The value unless it is nil or empty.
    var nonEmpty: String? {
        guard let self, !self.isEmpty else { return nil }
        return self
    }
}
