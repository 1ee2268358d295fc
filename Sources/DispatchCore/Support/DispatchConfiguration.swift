import Foundation

/// Runtime configuration (CONTRACT §6). Built from the environment; CLI flags then override fields.
package struct DispatchConfiguration: Sendable, Equatable {
    package var host: String
    package var port: Int
    package var stateDir: String
    /// `DISPATCH_INBOX_DIR` or `--inbox-dir`; `nil` means `<stateDir>/inbox`.
    package var inboxDirOverride: String?
    /// `DISPATCH_SANDBOX_ROOT`; `nil` means `<stateDir>/sandboxes`.
    package var sandboxRootOverride: String?
    package var token: String?
    package var tokenFile: String?
    package var maxConcurrent: Int
    package var defaultBackend: SandboxBackend
    /// Working directory for requests without `cwd`.
    package var defaultWorkdir: String
    /// Agent programs by tool (name on PATH or absolute path).
    package var codexBin: String
    package var claudeBin: String
    package var piBin: String
    /// SIGTERM → SIGKILL grace for agent process groups.
    package var killGraceMs: Int
    /// How long an agent that printed its final event may take to exit before it is ended as completed.
    package var completionGraceMs: Int
    package var k8sNamespace: String
    package var k8sImage: String?
    package var k8sSecret: String?
    package var callbackURL: String?
    package var kubeconfig: String?
    /// `DISPATCH_MAX_LOG_BYTES`: the most an attempt may write to stdout or to stderr (default 1 GiB).
    package var maxLogBytes: Int64
    /// `DISPATCH_MAX_PATCH_FILE_BYTES`: files larger than this stay out of the patch (default 64 MiB).
    package var maxPatchFileBytes: Int64
    /// `DISPATCH_LEASE_SECONDS`: how long a runner's lease on its rows holds between renewals (default 15).
    package var leaseSeconds: Int
    /// `DISPATCH_STORE_RETRY_SECONDS`: how long a terminal store write is retried before it counts as failed.
    package var storeRetrySeconds: Double
    /// Whether agents and verification commands die with this runner process, however it dies. Set by
    /// `dispatch run` and the job-runner (CONTRACT §4: an agent never outlives its `dispatch run`); not by `serve`.
    package var agentsDieWithRunner = false
    /// `DISPATCH_ALLOWED_HOSTS`: Host names a loopback listener accepts besides this machine's.
    package var allowedHosts: [String]
    /// `DISPATCH_K8S_GIT_SECRET`: the Secret with git credentials (`username`+`password`, or `token`) Jobs mount.
    package var k8sGitSecret: String?
    /// Extra environment variable names passed through to agents (`DISPATCH_AGENT_ENV`, comma-separated).
    package var agentEnvPassthrough: [String]
    /// `DISPATCH_ISOLATION`: `auto` (bubblewrap when it works here), `bwrap` (required) or `none` (CONTRACT §7).
    package var isolation: String
    /// `DISPATCH_AGENT_RW_PATHS`: extra paths an isolated sandboxed agent may write (colon-separated).
    package var agentWritablePaths: [String]
    /// `DISPATCH_AGENT_HOME`: where the CLIs' credential and config files are copied from into each run's own home,
    /// and refreshed credentials written back to; `nil`: the runner's `HOME` (CONTRACT §7).
    package var agentHome: String?
    /// Other files the runner reads secrets from (those a kubeconfig names), hidden from isolated agents.
    package var secretFiles: [String] = []
    /// `DISPATCH_MAX_MEMORY_BYTES`: the memory one run (one agent attempt or verification command with everything it
    /// starts) may use; `0` turns it off. Default: four fifths of this machine's memory, so a hog is killed in its
    /// own cgroup before the machine runs out (and picks `serve`).
    package var maxMemoryBytes: Int64?
    /// `DISPATCH_MAX_PROCESSES`: how many processes one run may have at once; `0` turns it off (default 4096).
    package var maxProcesses: Int?
    /// `DISPATCH_DATABASE_URL`: `postgres://…` puts the store on PostgreSQL (CONTRACT §8); unset, the embedded SQLite.
    package var databaseURL: String?
    /// `DISPATCH_REPLICA_URL`: how other replicas reach this one (default: its listener's address).
    package var replicaURL: String?
    /// `DISPATCH_WARM_SANDBOXES`: ready checkouts `serve` keeps per repository at its latest baseSha (0: none).
    package var warmSandboxes: Int
    /// `DISPATCH_MAX_RUN_DISK_BYTES`: what one run's checkout, logs and home may take on disk (default 10 GiB; `0`
    /// turns it off), watched while its agent runs (CONTRACT §7).
    package var maxRunDiskBytes: Int64?
    /// `DISPATCH_MAX_RUN_DISK_BYTES` as given, checked at start-up (not a whole number ≥ 0 → exit 2 naming it).
    package var maxRunDiskBytesSetting: String?
    /// `DISPATCH_AGENT_UIDS`: the uids a root runner leases to sandboxed agents, `FIRST-LAST` (CONTRACT §7).
    package var agentUids: String
    /// `DISPATCH_AGENT_USER`: who a host-mode agent runs as when its work dir is owned by root (`root`: as root, an
    /// explicit and logged opt-out); `nil`: such a work dir is refused.
    package var agentUser: String?

    /// Reads the contract's environment variables, applying defaults.
    package init(environment env: [String: String] = ProcessInfo.processInfo.environment) {
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
        isolation = env["DISPATCH_ISOLATION"].nonEmpty ?? "auto"
        let memory = env["DISPATCH_MAX_MEMORY_BYTES"].flatMap { Int64($0) } ?? Int64(ProcessInfo.processInfo.physicalMemory / 5 * 4)
        maxMemoryBytes = memory > 0 ? memory : nil
        databaseURL = env["DISPATCH_DATABASE_URL"].nonEmpty
        replicaURL = env["DISPATCH_REPLICA_URL"].nonEmpty
        warmSandboxes = env["DISPATCH_WARM_SANDBOXES"].flatMap { Int($0) }.map { min(max(0, $0), 64) } ?? 0
        // The database password file is a secret the runner reads: hidden from agents like the token file.
        if let passwordFile = env["DISPATCH_DATABASE_PASSWORD_FILE"].nonEmpty { secretFiles.append(passwordFile) }
        let processes = env["DISPATCH_MAX_PROCESSES"].flatMap { Int($0) } ?? 4096
        maxProcesses = processes > 0 ? processes : nil
        agentHome = env["DISPATCH_AGENT_HOME"].nonEmpty
        agentUids = env["DISPATCH_AGENT_UIDS"].nonEmpty ?? "61184-65519"
        maxRunDiskBytesSetting = env["DISPATCH_MAX_RUN_DISK_BYTES"].nonEmpty
        let disk = maxRunDiskBytesSetting.flatMap { Int64($0) } ?? (10 << 30)
        maxRunDiskBytes = disk > 0 ? disk : nil
        agentUser = env["DISPATCH_AGENT_USER"].nonEmpty
        agentWritablePaths = (env["DISPATCH_AGENT_RW_PATHS"] ?? "").split(separator: ":").map(String.init).filter { $0.hasPrefix("/") }
        agentEnvPassthrough = (env["DISPATCH_AGENT_ENV"] ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
    }

    /// Where inbox result files go.
    package var inboxDir: String { inboxDirOverride ?? "\(stateDir)/inbox" }

    /// Where local sandboxes are created.
    package var sandboxRoot: String { sandboxRootOverride ?? "\(stateDir)/sandboxes" }

    /// The program configured for `tool` (canaries run `/bin/sh`).
    package func program(for tool: AgentTool) -> String {
        switch tool {
        case .codex: codexBin
        case .claude: claudeBin
        case .pi: piBin
        case .canary: "/bin/sh"
        }
    }

    /// The environment variable that overrides the program of `tool`.
    package static func binVariable(for tool: AgentTool) -> String? {
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
