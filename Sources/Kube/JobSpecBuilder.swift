import DispatchCore
import Execution
import Foundation

/// Builds the `batch/v1` Job that runs one request with `dispatch job-runner` (CONTRACT §5).
public struct JobSpecBuilder: Sendable {
    /// Cluster-side settings.
    public struct Settings: Sendable {
        public var namespace: String
        public var image: String
        /// The shared Secret holding agent credentials (model API keys); never inlined.
        public var secretName: String
        /// The Secret with git credentials (`username`+`password`, or `token`), mounted when set.
        public var gitSecretName: String?
        /// Signs each Job's own callback token; the admin token itself never reaches a Job.
        public var callbackTokens: CallbackTokens
        public var callbackURL: String
        public var serviceAccountName: String?
        /// Seconds a finished Job is kept.
        public var ttlSecondsAfterFinished: Int
        /// Added to the budget for `activeDeadlineSeconds`: the runner's own deadline ends first.
        public var deadlineMarginSeconds: Int
        public var cpuRequest = "500m", cpuLimit = "2", memoryRequest = "512Mi", memoryLimit = "2Gi", ephemeralStorage = "4Gi"

        public init(
            namespace: String, image: String, secretName: String, callbackURL: String, callbackTokens: CallbackTokens,
            gitSecretName: String? = nil, serviceAccountName: String? = nil, ttlSecondsAfterFinished: Int = 3600,
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
    public static let secretKeys: [(env: String, key: String, optional: Bool)] = [
        ("OPENAI_API_KEY", "openai-api-key", true),
        ("ANTHROPIC_API_KEY", "anthropic-api-key", true),
    ]

    /// Where the Job's own Secret (task, verification commands) is mounted, and the git credentials.
    public static let requestMountPath = "/var/run/agent-dispatch/request"
    public static let gitMountPath = "/var/run/agent-dispatch/git"
    /// Keys of the per-Job Secret (CONTRACT §5).
    public static let callbackTokenKey = "callback-token", taskKey = "task", verificationKey = "verification-commands"

    /// Label marking Jobs this runner manages (restart recovery lists by it).
    public static let managedByLabel = "app.kubernetes.io/managed-by"
    public static let managedByValue = "agent-dispatch"
    public static let requestIdAnnotation = "agent-dispatch.dev/request-id"

    public let settings: Settings

    public init(settings: Settings) {
        self.settings = settings
    }

    /// The Job manifest for `request` with `remainingSeconds` of its budget left, as JSON-ready dictionaries.
    public func job(for request: DispatchRequest, repoURL: String, branch: String?, baseSha: String?, remainingSeconds: Int) -> [String: Any] {
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

        var env: [[String: Any]] = [
            ["name": "REQUEST_ID", "value": request.requestId],
            ["name": "WORKFLOW_ID", "value": request.workflowId ?? ""],
            ["name": "STORY_ID", "value": request.storyId ?? ""],
            ["name": "BASE_SHA", "value": baseSha ?? ""],
            ["name": "REPO_URL", "value": repoURL],
            ["name": "REPO_BRANCH", "value": branch ?? ""],
            ["name": "AGENT_PROGRAM", "value": request.tool.rawValue],
            ["name": "AGENT_MODEL", "value": request.model ?? ""],
            ["name": "TIMEOUT_SECONDS", "value": "\(timeout)"],
            ["name": "TASK_PROMPT_FILE", "value": "\(Self.requestMountPath)/\(Self.taskKey)"],
            ["name": "VERIFICATION_COMMANDS_FILE", "value": "\(Self.requestMountPath)/\(Self.verificationKey)"],
            ["name": "RESULT_CALLBACK_URL", "value": settings.callbackURL],
            ["name": "RESULT_CALLBACK_TOKEN", "valueFrom": ["secretKeyRef": ["name": name, "key": Self.callbackTokenKey]]],
            ["name": "JOB_NAME", "value": name],
            ["name": "JOB_NAMESPACE", "valueFrom": ["fieldRef": ["fieldPath": "metadata.namespace"]]],
            ["name": "HOME", "value": "/tmp/home"],
        ]
        for secret in Self.secretKeys {
            env.append(["name": secret.env, "valueFrom": ["secretKeyRef": ["name": settings.secretName, "key": secret.key, "optional": secret.optional]]])
        }
        var mounts: [[String: Any]] = [
            ["name": "work", "mountPath": "/tmp"],
            ["name": "request", "mountPath": Self.requestMountPath, "readOnly": true],
        ]
        var volumes: [[String: Any]] = [
            ["name": "work", "emptyDir": ["sizeLimit": settings.ephemeralStorage]],
            ["name": "request", "secret": [
                "secretName": name, "defaultMode": 0o400,
                "items": [["key": Self.taskKey, "path": Self.taskKey], ["key": Self.verificationKey, "path": Self.verificationKey]],
            ] as [String: Any]],
        ]
        if let git = settings.gitSecretName {
            env.append(["name": "GIT_CREDENTIALS_DIR", "value": Self.gitMountPath])
            mounts.append(["name": "git-credentials", "mountPath": Self.gitMountPath, "readOnly": true])
            volumes.append(["name": "git-credentials", "secret": ["secretName": git, "defaultMode": 0o400] as [String: Any]])
        }

        let container: [String: Any] = [
            "name": "job-runner",
            "image": settings.image,
            "imagePullPolicy": "IfNotPresent",
            "args": ["job-runner"],
            "env": env,
            "resources": [
                "requests": ["cpu": settings.cpuRequest, "memory": settings.memoryRequest, "ephemeral-storage": settings.ephemeralStorage],
                "limits": ["cpu": settings.cpuLimit, "memory": settings.memoryLimit, "ephemeral-storage": settings.ephemeralStorage],
            ],
            "securityContext": [
                "allowPrivilegeEscalation": false, "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                "capabilities": ["drop": ["ALL"]], "seccompProfile": ["type": "RuntimeDefault"],
            ],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": mounts,
        ]
        var podSpec: [String: Any] = [
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 30,
            "securityContext": [
                "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": ["type": "RuntimeDefault"],
            ],
            "containers": [container],
            "volumes": volumes,
        ]
        if let account = settings.serviceAccountName { podSpec["serviceAccountName"] = account }

        return [
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": ["name": name, "namespace": settings.namespace, "labels": labels, "annotations": annotations],
            "spec": [
                // Created suspended: no pod can start before its Secret exists; the controller resumes it.
                "suspend": true,
                "backoffLimit": 0,
                "activeDeadlineSeconds": timeout + settings.deadlineMarginSeconds,
                "ttlSecondsAfterFinished": settings.ttlSecondsAfterFinished,
                "podFailurePolicy": [
                    "rules": [
                        ["action": "FailJob", "onExitCodes": ["containerName": "job-runner", "operator": "NotIn", "values": [0]]],
                        ["action": "Ignore", "onPodConditions": [["type": "DisruptionTarget", "status": "True"]]],
                    ]
                ],
                "template": ["metadata": ["labels": labels, "annotations": annotations], "spec": podSpec],
            ],
        ]
    }

    /// The Job's own Secret: its callback token, task and verification commands, owned by the Job (`uid`) so the
    /// garbage collector removes it with the Job.
    public func secret(for request: DispatchRequest, jobUID: String?) -> [String: Any] {
        let name = JobNaming.jobName(requestId: request.requestId)
        let commands = (try? JSONEncoder().encode(request.verificationCommands)) ?? Data("[]".utf8)
        var metadata: [String: Any] = [
            "name": name, "namespace": settings.namespace,
            "labels": [Self.managedByLabel: Self.managedByValue, "agent-dispatch.dev/request-id": JobNaming.labelValue(request.requestId)]
                .filter { !$0.value.isEmpty },
            "annotations": [Self.requestIdAnnotation: request.requestId],
        ]
        if let jobUID {
            metadata["ownerReferences"] = [[
                "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": jobUID, "blockOwnerDeletion": false, "controller": false,
            ] as [String: Any]]
        }
        return [
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
            "data": [
                Self.callbackTokenKey: Data(settings.callbackTokens.token(for: request.requestId).utf8).base64EncodedString(),
                Self.taskKey: Data(request.task.utf8).base64EncodedString(),
                Self.verificationKey: commands.base64EncodedString(),
            ],
        ]
    }

    /// What `render-job` prints: every object the request creates, as a `List`, secret values redacted.
    public func renderedList(for request: DispatchRequest, repoURL: String, branch: String?, baseSha: String?, remainingSeconds: Int) -> [String: Any] {
        let job = job(for: request, repoURL: repoURL, branch: branch, baseSha: baseSha, remainingSeconds: remainingSeconds)
        var secret = secret(for: request, jobUID: nil)
        let data = secret.removeValue(forKey: "data") as? [String: String] ?? [:]
        secret["stringData"] = data.mapValues { value in "<redacted: \(Data(base64Encoded: value)?.count ?? 0) bytes>" }
        return ["apiVersion": "v1", "kind": "List", "items": [job, secret]]
    }

    /// The manifest as pretty JSON (valid YAML too).
    public static func render(_ manifest: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
