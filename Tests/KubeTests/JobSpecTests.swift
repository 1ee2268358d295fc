import DispatchCore
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import Kube
import Testing

@Suite struct JobSpecTests {
    let settings = JobSpecBuilder.Settings(
        namespace: "agents",
        image: "registry.example.invalid/agent-dispatch:1",
        secretName: "agent-dispatch-secrets",
        callbackURL: "http://agent-dispatch.agents.svc:3111/internal/agent-result",
        callbackTokens: CallbackTokens(adminToken: adminToken)
    )
    static let adminToken = "admin-0123456789abcdef0123456789abcdef"
    var adminToken: String { Self.adminToken }

    @Test func tenThousandRandomRequestIdsGiveValidDistinctNames() {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
        var generator = SystemRandomNumberGenerator()
        var ids = Set<String>()
        while ids.count < 10_000 {
            let length = Int.random(in: 1...128, using: &generator)
            ids.insert(String((0..<length).map { _ in alphabet.randomElement(using: &generator)! }))
        }
        // Variants that collide after sanitising: case, underscores, long shared prefixes.
        let base = String(repeating: "Story_Branch.", count: 9)
        ids.formUnion(["A_b", "a-b", "a.b", "A-B", "a:b", base + "1", base + "2", "___", "...", "-", "9"])
        let names = ids.map(JobNaming.jobName(requestId:))
        #expect(names.allSatisfy(JobNaming.isDNS1123Label), "\(names.first { !JobNaming.isDNS1123Label($0) } ?? "")")
        #expect(Set(names).count == ids.count)
        #expect(JobNaming.jobName(requestId: "wf-1.story:7") == JobNaming.jobName(requestId: "wf-1.story:7"))
    }

    @Test func labelValuesAreLabelSafe() {
        #expect(JobNaming.labelValue("wf:1/x") == "wf-1-x")
        #expect(JobNaming.labelValue(String(repeating: "a", count: 100)).count == 63)
        #expect(JobNaming.labelValue("_-x-_") == "x")
    }

    func manifest(_ request: DispatchRequest) -> KubeJobManifest {
        JobSpecBuilder(settings: settings).job(
            for: request,
            repoURL: "https://git.example.invalid/app.git",
            branch: "main",
            baseSha: "abc123",
            remainingSeconds: 900
        )
    }

    /// A manifest as the API server sees it: its JSON (as `KubeClient` sends it), parsed.
    func object(_ manifest: some Encodable) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(manifest)) as? [String: Any])
    }

    @Test func jobMeetsTheContract() throws {
        var request = DispatchRequest(requestId: "Req_1:a", task: "fix it\nplease", tool: .codex, model: "o3", workflowId: "wf/1", storyId: "s 2")
        request.verificationCommands = ["make test"]
        let job = try object(manifest(request))
        let spec = try #require(job["spec"] as? [String: Any])
        #expect(spec["backoffLimit"] as? Int == 0)
        #expect(spec["activeDeadlineSeconds"] as? Int == 960)
        #expect(spec["ttlSecondsAfterFinished"] as? Int != nil)
        let rules = try #require((spec["podFailurePolicy"] as? [String: Any])?["rules"] as? [[String: Any]])
        #expect(rules.map { $0["action"] as? String } == ["FailJob", "Ignore"])
        let template = try #require((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        #expect(template["restartPolicy"] as? String == "Never")
        #expect(template["automountServiceAccountToken"] as? Bool == false)
        let podSecurity = try #require(template["securityContext"] as? [String: Any])
        #expect(podSecurity["runAsNonRoot"] as? Bool == true)
        #expect((podSecurity["seccompProfile"] as? [String: Any])?["type"] as? String == "RuntimeDefault")
        let container = try #require((template["containers"] as? [[String: Any]])?.first)
        let security = try #require(container["securityContext"] as? [String: Any])
        #expect(security["allowPrivilegeEscalation"] as? Bool == false)
        #expect((security["capabilities"] as? [String: Any])?["drop"] as? [String] == ["ALL"])
        #expect(container["terminationMessagePolicy"] as? String == "FallbackToLogsOnError")
        #expect((container["resources"] as? [String: Any])?["limits"] != nil)

        let env = try #require(container["env"] as? [[String: Any]])
        let names = Set(env.compactMap { $0["name"] as? String })
        for required in [
            "REQUEST_ID", "WORKFLOW_ID", "STORY_ID", "BASE_SHA", "REPO_URL", "REPO_BRANCH", "AGENT_PROGRAM", "AGENT_MODEL",
            "TIMEOUT_SECONDS", "TASK_PROMPT_FILE", "VERIFICATION_COMMANDS_FILE", "RESULT_CALLBACK_URL", "RESULT_CALLBACK_TOKEN",
            "JOB_NAME", "JOB_NAMESPACE",
        ] {
            #expect(names.contains(required), "\(required)")
        }
        let value = { (name: String) in env.first { $0["name"] as? String == name }?["value"] as? String }
        #expect(value("TASK_PROMPT_FILE") == "\(JobSpecBuilder.requestMountPath)/task")
        #expect(value("TIMEOUT_SECONDS") == "900")
        let token = try #require(env.first { $0["name"] as? String == "RESULT_CALLBACK_TOKEN" })
        #expect(token["value"] == nil)
        #expect(
            ((token["valueFrom"] as? [String: Any])?["secretKeyRef"] as? [String: Any])?["name"] as? String
                == JobNaming.jobName(requestId: request.requestId),
            "the Job's own Secret, not the shared one"
        )
        #expect(spec["suspend"] as? Bool == true, "created suspended: it starts only once its Secret exists")

        let metadata = try #require(job["metadata"] as? [String: Any])
        #expect((metadata["annotations"] as? [String: String])?[JobSpecBuilder.requestIdAnnotation] == "Req_1:a")
        #expect((metadata["labels"] as? [String: String])?["agent-dispatch.dev/request-id"] == "Req_1-a")
        #expect((metadata["labels"] as? [String: String])?[JobSpecBuilder.managedByLabel] == "agent-dispatch")
    }

    @Test func noSecretValueIsInlined() throws {
        let secret = "sk-live-very-secret-value"
        let request = DispatchRequest(requestId: "r", task: "t", tool: .claude)
        setenv("ANTHROPIC_API_KEY", secret, 1)
        setenv("DISPATCH_TOKEN", secret, 1)
        defer {
            unsetenv("ANTHROPIC_API_KEY")
            unsetenv("DISPATCH_TOKEN")
        }
        let rendered = JobSpecBuilder.render(manifest(request))
        #expect(!rendered.contains(secret))
    }

    @Test func theJobsOwnSecretHoldsItsTokenTaskAndCommandsAndIsOwnedByTheJob() throws {
        var request = DispatchRequest(requestId: "own-secret", task: "the task", tool: .codex)
        request.verificationCommands = ["make test", "swift build"]
        let manifest = JobSpecBuilder(settings: settings).secret(for: request, jobUID: "uid-123")
        let secret = try object(manifest)
        let metadata = try #require(secret["metadata"] as? [String: Any])
        #expect(metadata["name"] as? String == JobNaming.jobName(requestId: "own-secret"))
        let owner = try #require((metadata["ownerReferences"] as? [[String: Any]])?.first)
        #expect(owner["kind"] as? String == "Job" && owner["uid"] as? String == "uid-123")
        let data = try #require(secret["data"] as? [String: String])
        let decoded = data.mapValues { String(decoding: Data(base64Encoded: $0) ?? Data(), as: UTF8.self) }
        #expect(decoded["task"] == "the task")
        #expect(decoded["verification-commands"] == #"["make test","swift build"]"#)
        let token = try #require(decoded["callback-token"])
        #expect(CallbackTokens(adminToken: adminToken).verify(token, requestId: "own-secret"))
        #expect(!CallbackTokens(adminToken: adminToken).verify(token, requestId: "other-request"), "valid for its own request only")
        #expect(!JobSpecBuilder.render(manifest).contains(adminToken))
    }

    /// `render-job` for each of k8s/samples, with k8s/validate.sh's settings, has the content recorded in
    /// Tests/Fixtures/render-job (printed before the manifests became Codable structs): same keys, same values.
    @Test(arguments: ["request-codex", "request-long-id", "request-minimal"])
    func renderedSamplesHaveTheRecordedContent(sample: String) throws {
        let root = TestPaths.packageRoot
        let request = try RequestValidator.validate(json: Data(contentsOf: URL(fileURLWithPath: "\(root)/k8s/samples/\(sample).json")))
        let settings = JobSpecBuilder.Settings(
            namespace: "agents",
            image: "registry.example.invalid/agent-dispatch:1",
            secretName: "agent-dispatch-secrets",
            callbackURL: "http://agent-dispatch.agents.svc:3111/internal/agent-result",
            callbackTokens: CallbackTokens(adminToken: adminToken),
            gitSecretName: "agent-dispatch-git"
        )
        let source = try JobSource.resolve(request, defaultCwd: root)
        let list = JobSpecBuilder(settings: settings).renderedList(
            for: request,
            repoURL: source.repoURL,
            branch: source.branch,
            baseSha: source.baseSha,
            remainingSeconds: Int(request.timeout.rounded(.up))
        )
        // Compared as parsed JSON, re-serialized with sorted keys: content, not formatting.
        func canonical(_ data: Data) throws -> String {
            String(
                decoding: try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: data), options: [.sortedKeys]),
                as: UTF8.self
            )
        }
        let recorded = try Data(contentsOf: URL(fileURLWithPath: "\(root)/Tests/Fixtures/render-job/\(sample).json"))
        #expect(try canonical(Data(JobSpecBuilder.render(list).utf8)) == canonical(recorded))
    }

    @Test func aMaximalTaskKeepsEveryEnvValueSmallAndRenderJobRedactsSecrets() throws {
        let task = String(repeating: "ü", count: 128 * 1024)  // 256 KiB of UTF-8
        var request = DispatchRequest(requestId: "big", task: task, tool: .codex)
        request.verificationCommands = [String(repeating: "x", count: 100_000)]
        let manifests = JobSpecBuilder(settings: settings).renderedList(
            for: request,
            repoURL: "https://git.example.invalid/app.git",
            branch: nil,
            baseSha: nil,
            remainingSeconds: 60
        )
        let list = try object(manifests)
        #expect(list["kind"] as? String == "List")
        let items = try #require(list["items"] as? [[String: Any]])
        #expect(items.map { $0["kind"] as? String } == ["Job", "Secret"])
        let template = try #require(((items[0]["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        let env = try #require((template["containers"] as? [[String: Any]])?.first?["env"] as? [[String: Any]])
        let longest = env.compactMap { $0["value"] as? String }.map(\.utf8.count).max() ?? 0
        #expect(longest < 64 * 1024, "longest env value: \(longest) bytes")
        let rendered = JobSpecBuilder.render(manifests)
        #expect(!rendered.contains(String(repeating: "ü", count: 100)), "the task is not printed")
        #expect(!rendered.contains(CallbackTokens(adminToken: adminToken).token(for: "big")), "the callback token is redacted")
        #expect(rendered.contains("<redacted: 262144 bytes>"))
    }
}
