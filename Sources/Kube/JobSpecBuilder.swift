import DispatchCore
import Execution
import Foundation

/// Builds the `batch/v1` Job that runs one request with `dispatch job-runner` (CONTRACT §5).
package struct JobSpecBuilder: Sendable {
    /// Cluster-side settings.
    package struct Settings: Sendable {
        package var namespace: String
        package var image: String
        /// The shared Secret holding agent credentials (model API keys); never inlined.
        package var secretName: String
        /// The Secret with git credentials (`username`+`password`, or `token`), mounted when set.
        package var gitSecretName: String?
        /// Signs each Job's own callback token; the admin token itself never reaches a Job.
        package var callbackTokens: CallbackTokens
        package var callbackURL: String
        package var serviceAccountName: String?
        /// Seconds a finished Job is kept.
        package var ttlSecondsAfterFinished: Int
        /// Added to the budget for `activeDeadlineSeconds`: the runner's own deadline ends first.
        package var deadlineMarginSeconds: Int
        package var cpuRequest = "500m", cpuLimit = "2", memoryRequest = "512Mi", memoryLimit = "2Gi", ephemeralStorage = "4Gi"

        package init(
            namespace: String,
            image: String,
            secretName: String,
            callbackURL: String,
            callbackTokens: CallbackTokens,
            gitSecretName: String? = nil,
            serviceAccountName: String? = nil,
            ttlSecondsAfterFinished: Int = 3600,
            deadlineMarginSeconds: Int = 60
        ) {
            self.namespace = namespace
            self.image = image
            self.secretName = secretName
            self.gitSecretName = gitSecretName
            self.callbackTokens = callbackTokens
            self.callbackURL = callbackURL
            self.serviceAccountName = serviceAccountName
            self.ttlSecondsAfterFinished = ttlSecondsAfterFinished
            self.deadlineMarginSeconds = deadlineMarginSeconds
        }
    }

    /// Keys of the shared Secret the Job reads (agent credentials, all optional).
    package static let secretKeys: [(env: String, key: String, optional: Bool)] = [
        ("OPENAI_API_KEY", "openai-api-key", true),
        ("ANTHROPIC_API_KEY", "anthropic-api-key", true),
    ]

    /// Where the Job's own Secret (task, verification commands) is mounted, and the git credentials.
    package static let requestMountPath = "/var/run/agent-dispatch/request"
    package static let gitMountPath = "/var/run/agent-dispatch/git"
    /// Keys of the per-Job Secret (CONTRACT §5).
    package static let callbackTokenKey = "callback-token", taskKey = "task", verificationKey = "verification-commands"

    /// Label marking Jobs this runner manages (restart recovery lists by it).
    package static let managedByLabel = "app.kubernetes.io/managed-by"
    package static let managedByValue = "agent-dispatch"
    package static let requestIdAnnotation = "agent-dispatch.dev/request-id"

    package let settings: Settings

    package init(settings: Settings) {
        self.settings = settings
    }

    /// The Job manifest for `request` with `remainingSeconds` of its budget left.
    package func job(for request: DispatchRequest, repoURL: String, branch: String?, baseSha: String?, remainingSeconds: Int) -> KubeJobManifest {
        let name = JobNaming.jobName(requestId: request.requestId)
        let timeout = max(1, remainingSeconds)
        var labels: [String: String] = [
            "app.kubernetes.io/name": "agent-dispatch-job", "app.kubernetes.io/component": "job-runner",
            Self.managedByLabel: Self.managedByValue, "agent-dispatch.dev/request-id": JobNaming.labelValue(request.requestId),
        ]
        if let workflowId = request.workflowId { labels["agent-dispatch.dev/workflow-id"] = JobNaming.labelValue(workflowId) }
        if let storyId = request.storyId { labels["agent-dispatch.dev/story-id"] = JobNaming.labelValue(storyId) }
        labels = labels.filter { !$0.value.isEmpty }
        var annotations: [String: String] = [Self.requestIdAnnotation: request.requestId]
        if let workflowId = request.workflowId { annotations["agent-dispatch.dev/workflow-id"] = workflowId }
        if let storyId = request.storyId { annotations["agent-dispatch.dev/story-id"] = storyId }

        let env = env(for: request, jobName: name, repoURL: repoURL, branch: branch, baseSha: baseSha, timeout: timeout)
        let podSpec = KubePodSpec(
            restartPolicy: "Never",
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            terminationGracePeriodSeconds: 30,
            securityContext: KubePodSpec.SecurityContext(
                runAsNonRoot: true,
                runAsUser: 10001,
                runAsGroup: 10001,
                fsGroup: 10001,
                seccompProfile: KubePodSpec.SeccompProfile(type: "RuntimeDefault")
            ),
            containers: [container(env: env)],
            volumes: volumes(jobName: name),
            serviceAccountName: settings.serviceAccountName
        )
        let failurePolicy = KubeJobManifest.PodFailurePolicy(rules: [
            KubeJobManifest.Rule(
                action: "FailJob",
                onExitCodes: KubeJobManifest.ExitCodes(containerName: "job-runner", operator: "NotIn", values: [0])
            ),
            KubeJobManifest.Rule(action: "Ignore", onPodConditions: [KubeJobManifest.PodCondition(type: "DisruptionTarget", status: "True")]),
        ])
        return KubeJobManifest(
            metadata: KubeObjectMeta(name: name, namespace: settings.namespace, labels: labels, annotations: annotations),
            spec: KubeJobManifest.Spec(
                // Created suspended: no pod can start before its Secret exists; the controller resumes it.
                suspend: true,
                backoffLimit: 0,
                activeDeadlineSeconds: timeout + settings.deadlineMarginSeconds,
                ttlSecondsAfterFinished: settings.ttlSecondsAfterFinished,
                podFailurePolicy: failurePolicy,
                template: KubeJobManifest.PodTemplate(metadata: KubeObjectMeta(labels: labels, annotations: annotations), spec: podSpec)
            )
        )
    }

    /// The runner's environment (CONTRACT §5): the request, where its task and commands are mounted, the callback,
    /// and the credentials as references to Secret keys, never as values.
    func env(
        for request: DispatchRequest,
        jobName name: String,
        repoURL: String,
        branch: String?,
        baseSha: String?,
        timeout: Int
    ) -> [KubeContainer.EnvVar] {
        var env: [KubeContainer.EnvVar] = [
            .literal("REQUEST_ID", request.requestId),
            .literal("WORKFLOW_ID", request.workflowId ?? ""),
            .literal("STORY_ID", request.storyId ?? ""),
            .literal("BASE_SHA", baseSha ?? ""),
            .literal("REPO_URL", repoURL),
            .literal("REPO_BRANCH", branch ?? ""),
            .literal("AGENT_PROGRAM", request.tool.rawValue),
            .literal("AGENT_MODEL", request.model ?? ""),
            .literal("TIMEOUT_SECONDS", "\(timeout)"),
            .literal("TASK_PROMPT_FILE", "\(Self.requestMountPath)/\(Self.taskKey)"),
            .literal("VERIFICATION_COMMANDS_FILE", "\(Self.requestMountPath)/\(Self.verificationKey)"),
            .literal("RESULT_CALLBACK_URL", settings.callbackURL),
            .secretKey("RESULT_CALLBACK_TOKEN", secret: name, key: Self.callbackTokenKey),
            .literal("JOB_NAME", name),
            .field("JOB_NAMESPACE", path: "metadata.namespace"),
            .literal("HOME", "/tmp/home"),
        ]
        for secret in Self.secretKeys {
            env.append(.secretKey(secret.env, secret: settings.secretName, key: secret.key, optional: secret.optional))
        }
        if settings.gitSecretName != nil { env.append(.literal("GIT_CREDENTIALS_DIR", Self.gitMountPath)) }
        return env
    }

    /// The `job-runner` container: locked down (non-root, read-only root, no capabilities), bounded resources.
    func container(env: [KubeContainer.EnvVar]) -> KubeContainer {
        var mounts = [
            KubeContainer.VolumeMount(name: "work", mountPath: "/tmp"),
            KubeContainer.VolumeMount(name: "request", mountPath: Self.requestMountPath, readOnly: true),
        ]
        if settings.gitSecretName != nil {
            mounts.append(KubeContainer.VolumeMount(name: "git-credentials", mountPath: Self.gitMountPath, readOnly: true))
        }
        return KubeContainer(
            name: "job-runner",
            image: settings.image,
            imagePullPolicy: "IfNotPresent",
            args: ["job-runner"],
            env: env,
            resources: KubeContainer.Resources(
                requests: KubeContainer.ResourceList(
                    cpu: settings.cpuRequest,
                    memory: settings.memoryRequest,
                    ephemeralStorage: settings.ephemeralStorage
                ),
                limits: KubeContainer.ResourceList(cpu: settings.cpuLimit, memory: settings.memoryLimit, ephemeralStorage: settings.ephemeralStorage)
            ),
            securityContext: KubeContainer.SecurityContext(
                allowPrivilegeEscalation: false,
                runAsNonRoot: true,
                readOnlyRootFilesystem: true,
                capabilities: KubeContainer.Capabilities(drop: ["ALL"]),
                seccompProfile: KubePodSpec.SeccompProfile(type: "RuntimeDefault")
            ),
            terminationMessagePolicy: "FallbackToLogsOnError",
            volumeMounts: mounts
        )
    }

    /// The pod's volumes: scratch space, the Job's own Secret (task and commands only) and the git credentials.
    func volumes(jobName name: String) -> [KubePodSpec.Volume] {
        let items = [Self.taskKey, Self.verificationKey].map { KubePodSpec.KeyToPath(key: $0, path: $0) }
        var volumes = [
            KubePodSpec.Volume(name: "work", emptyDir: KubePodSpec.EmptyDir(sizeLimit: settings.ephemeralStorage)),
            KubePodSpec.Volume(name: "request", secret: KubePodSpec.SecretSource(secretName: name, defaultMode: 0o400, items: items)),
        ]
        if let git = settings.gitSecretName {
            volumes.append(KubePodSpec.Volume(name: "git-credentials", secret: KubePodSpec.SecretSource(secretName: git, defaultMode: 0o400)))
        }
        return volumes
    }

    /// The Job's own Secret: its callback token, task and verification commands, owned by the Job (`uid`) so the
    /// garbage collector removes it with the Job.
    package func secret(for request: DispatchRequest, jobUID: String?) -> KubeSecretManifest {
        let name = JobNaming.jobName(requestId: request.requestId)
        let commands = (try? JSONEncoder().encode(request.verificationCommands)) ?? Data("[]".utf8)
        let owners = jobUID.map { uid in
            [KubeObjectMeta.OwnerReference(apiVersion: "batch/v1", kind: "Job", name: name, uid: uid, blockOwnerDeletion: false, controller: false)]
        }
        let metadata = KubeObjectMeta(
            name: name,
            namespace: settings.namespace,
            labels: [Self.managedByLabel: Self.managedByValue, "agent-dispatch.dev/request-id": JobNaming.labelValue(request.requestId)]
                .filter { !$0.value.isEmpty },
            annotations: [Self.requestIdAnnotation: request.requestId],
            ownerReferences: owners
        )
        return KubeSecretManifest(
            metadata: metadata,
            data: [
                Self.callbackTokenKey: Data(settings.callbackTokens.token(for: request.requestId).utf8).base64EncodedString(),
                Self.taskKey: Data(request.task.utf8).base64EncodedString(),
                Self.verificationKey: commands.base64EncodedString(),
            ]
        )
    }

    /// What `render-job` prints: every object the request creates, as a `List`, secret values redacted.
    package func renderedList(
        for request: DispatchRequest,
        repoURL: String,
        branch: String?,
        baseSha: String?,
        remainingSeconds: Int
    ) -> KubeManifestList {
        let job = job(for: request, repoURL: repoURL, branch: branch, baseSha: baseSha, remainingSeconds: remainingSeconds)
        var secret = secret(for: request, jobUID: nil)
        let data = secret.data ?? [:]
        secret.data = nil
        secret.stringData = data.mapValues { value in "<redacted: \(Data(base64Encoded: value)?.count ?? 0) bytes>" }
        return KubeManifestList(items: [.job(job), .secret(secret)])
    }

    /// The manifest as pretty JSON (valid YAML too), keys sorted, slashes unescaped.
    package static func render(_ manifest: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(manifest)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
