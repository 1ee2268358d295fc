import DispatchCore
import Foundation

/// Builds the `batch/v1` Job that runs one request with `dispatch job-runner` (CONTRACT §5).
public struct JobSpecBuilder: Sendable {
    /// Cluster-side settings.
    public struct Settings: Sendable {
        public var namespace: String
        public var image: String
        /// Secret holding `RESULT_CALLBACK_TOKEN` and agent credentials; never inlined.
        public var secretName: String
        public var callbackURL: String
        public var serviceAccountName: String?
        /// Seconds a finished Job is kept.
        public var ttlSecondsAfterFinished: Int
        /// Added to the budget for `activeDeadlineSeconds`: the runner's own deadline ends first.
        public var deadlineMarginSeconds: Int
        public var cpuRequest = "500m", cpuLimit = "2", memoryRequest = "512Mi", memoryLimit = "2Gi", ephemeralStorage = "4Gi"

        public init(
            namespace: String, image: String, secretName: String, callbackURL: String, serviceAccountName: String? = nil,
            ttlSecondsAfterFinished: Int = 3600, deadlineMarginSeconds: Int = 60
        ) {
            self.namespace = namespace
            self.image = image
            self.secretName = secretName
            self.callbackURL = callbackURL
            self.serviceAccountName = serviceAccountName
            self.ttlSecondsAfterFinished = ttlSecondsAfterFinished
            self.deadlineMarginSeconds = deadlineMarginSeconds
        }
    }

    /// Keys of the Secret the Job reads (all optional except the callback token).
    public static let secretKeys: [(env: String, key: String, optional: Bool)] = [
        ("RESULT_CALLBACK_TOKEN", "callback-token", false),
        ("OPENAI_API_KEY", "openai-api-key", true),
        ("ANTHROPIC_API_KEY", "anthropic-api-key", true),
        ("GIT_TOKEN", "git-token", true),
    ]

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
            ["name": "TASK_PROMPT_B64", "value": Data(request.task.utf8).base64EncodedString()],
            ["name": "VERIFICATION_COMMANDS_B64", "value": (try? JSONSerialization.data(withJSONObject: request.verificationCommands))?.base64EncodedString() ?? ""],
            ["name": "RESULT_CALLBACK_URL", "value": settings.callbackURL],
            ["name": "JOB_NAME", "value": name],
            ["name": "JOB_NAMESPACE", "valueFrom": ["fieldRef": ["fieldPath": "metadata.namespace"]]],
            ["name": "HOME", "value": "/tmp/home"],
        ]
        for secret in Self.secretKeys {
            env.append(["name": secret.env, "valueFrom": ["secretKeyRef": ["name": settings.secretName, "key": secret.key, "optional": secret.optional]]])
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
            "volumeMounts": [["name": "work", "mountPath": "/tmp"]],
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
            "volumes": [["name": "work", "emptyDir": ["sizeLimit": settings.ephemeralStorage]]],
        ]
        if let account = settings.serviceAccountName { podSpec["serviceAccountName"] = account }

        return [
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": ["name": name, "namespace": settings.namespace, "labels": labels, "annotations": annotations],
            "spec": [
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

    /// The manifest as pretty JSON (valid YAML too).
    public static func render(_ manifest: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
