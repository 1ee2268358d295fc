import DispatchCore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Hummingbird
import HummingbirdTesting
import Kube
import Logging

/// An engine whose k8s backend talks to a fake API server on 127.0.0.1 that runs each Job as a local
/// `dispatch job-runner` (the kubelet emulator), plus a git repo for the Jobs to clone.
struct Cluster: Sendable {
    struct Options: Sendable {
        var image = "img:1"
        var secrets = ["openai-api-key": "sk-test"]
        var dropCallback = true
        var callbackURL = "http://127.0.0.1:9/cb"
        var pollInterval: Duration = .milliseconds(100)
        var backstopInterval: Duration = .seconds(10)
        var podGrace: Duration = .seconds(5)
        var resultGrace: Duration = .seconds(2)
        var watchTimeoutSeconds = 240
        var logHandler: (@Sendable (String) -> any LogHandler)?
    }

    /// The admin token the cluster's callback tokens derive from (it must never reach a pod).
    static let adminToken = "admin-token-0123456789abcdef0123456789abcdef"

    let fixture: EngineFixture
    let api: FakeKubernetesAPI
    let repo: String
    let kube: KubeClient
    let settings: JobSpecBuilder.Settings
    let controller: KubeBackend

    var engine: DispatchEngine { fixture.engine }

    /// Runs `body` against a fresh fake cluster; runner processes and the client are stopped afterwards.
    static func with(_ dir: TempDir, _ options: Options = Options(), _ body: @Sendable (Cluster) async throws -> Void) async throws {
        // Shared with every agent uid (sticky, as /tmp): an agent of a root runner runs as a uid of its own. The pods'
        // workspaces lie outside it, as a real pod's do (not inside a path shared with agents).
        chmod(dir.path, 0o1777)
        let kubeletRoot = TempDir("kubelet")
        defer { withExtendedLifetime(kubeletRoot) {} }
        let kubelet = FakeKubernetesAPI.Kubelet(
            dispatchBinary: TestPaths.dispatchBinary,
            workRoot: kubeletRoot.path,
            secrets: options.secrets,
            // The tests read what an agent in the Job wrote under their own directory: an operator would allow such a path.
            environment: [
                "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_KILL_GRACE_MS": "1000", "DISPATCH_AGENT_RW_PATHS": dir.path,
            ],
            dropCallback: options.dropCallback
        )
        let api = FakeKubernetesAPI(kubelet: kubelet)
        let app = Application(router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        let repo = dir.child("origin-\(UUID().uuidString.prefix(4))")
        _ = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        try await app.test(.live) { client in
            let kube = try KubeClient(connection: KubeConnection(server: "http://127.0.0.1:\(client.port!)", namespace: "agents", token: api.token))
            let settings = JobSpecBuilder.Settings(
                namespace: "agents",
                image: options.image,
                secretName: "agent-dispatch-secrets",
                callbackURL: options.callbackURL,
                callbackTokens: CallbackTokens(adminToken: Cluster.adminToken)
            )
            let engineDir = TempDir("engine")
            let controller = KubeBackend(
                client: kube,
                settings: settings,
                logDirectory: "\(EngineFixture.stateDir(in: engineDir))/k8s-logs",
                defaultWorkdir: engineDir.path,
                pollInterval: options.pollInterval,
                backstopInterval: options.backstopInterval,
                podGrace: options.podGrace,
                resultGrace: options.resultGrace,
                watchTimeoutSeconds: options.watchTimeoutSeconds
            )
            let fixture = try EngineFixture(k8s: controller, logHandler: options.logHandler, dir: engineDir)
            let cluster = Cluster(fixture: fixture, api: api, repo: repo, kube: kube, settings: settings, controller: controller)
            do {
                try await body(cluster)
            } catch {
                api.stopAll()
                await kube.shutdown()
                throw error
            }
            api.stopAll()
            await kube.shutdown()
        }
    }

    /// A codex request for the k8s backend cloning this cluster's repo.
    func request(_ task: String, timeout: Double = 60) -> DispatchRequest {
        var request = fixture.request(.codex, task, timeout: timeout)
        request.executionMode = .sandbox
        request.sandboxBackend = .k8s
        request.repoUrl = repo
        return request
    }

    func jobName(_ request: DispatchRequest) -> String { JobNaming.jobName(requestId: request.requestId) }

    /// Starts `request` and waits until its Job exists.
    func start(_ request: DispatchRequest, token: CancelToken = CancelToken()) async -> Task<DispatchResult, any Error> {
        let engine = fixture.engine
        let task = Task { try await engine.runOnce(request, token: token).result }
        _ = await eventually { api.hasJob(jobName(request)) }
        // Resumed, so its pod exists: a test that sets the pod's phase or finishes the Job before that raced the
        // controller's resume (the phase went nowhere, and the run waited out its budget).
        _ = await eventually(timeout: .seconds(5)) { !api.isSuspended(jobName(request)) }
        return task
    }

    /// Requests the fake API saw for Job `name` itself (GET …/jobs/<name>).
    func jobReads(_ name: String) -> Int {
        api.requests.filter { $0.hasPrefix("GET ") && $0.contains("/jobs/\(name)") }.count
    }
}
