/// The `batch/v1` Job that runs one request (``JobSpecBuilder/job(for:repoURL:branch:baseSha:remainingSeconds:)``).
public struct KubeJobManifest: Sendable, Encodable {
    /// `spec`.
    public struct Spec: Sendable, Encodable {
        /// `suspend`: created suspended, resumed once the Job's Secret exists.
        public var suspend: Bool
        /// `backoffLimit`, `activeDeadlineSeconds` and `ttlSecondsAfterFinished`.
        public var backoffLimit: Int, activeDeadlineSeconds: Int, ttlSecondsAfterFinished: Int
        /// `podFailurePolicy`.
        public var podFailurePolicy: PodFailurePolicy
        /// `template`: the pod.
        public var template: PodTemplate
    }

    /// `spec.podFailurePolicy`.
    public struct PodFailurePolicy: Sendable, Encodable {
        /// `rules`, in order.
        public var rules: [Rule]
    }

    /// One rule of the pod failure policy: its `action` when the pod's exit codes or conditions match.
    public struct Rule: Sendable, Encodable {
        /// `action` (`FailJob`, `Ignore`, …).
        public var action: String
        /// `onExitCodes`.
        public var onExitCodes: ExitCodes?
        /// `onPodConditions`.
        public var onPodConditions: [PodCondition]?
    }

    /// `onExitCodes` of a rule: a container's exit code compared with `values`.
    public struct ExitCodes: Sendable, Encodable {
        /// `containerName` and `operator` (`In`, `NotIn`).
        public var containerName: String, `operator`: String
        /// `values`.
        public var values: [Int]
    }

    /// One of `onPodConditions` of a rule.
    public struct PodCondition: Sendable, Encodable {
        /// The condition's `type` and `status`.
        public var type: String, status: String
    }

    /// `spec.template`.
    public struct PodTemplate: Sendable, Encodable {
        /// The pod's `metadata` (labels and annotations).
        public var metadata: KubeObjectMeta
        /// The pod's `spec`.
        public var spec: KubePodSpec
    }

    /// `apiVersion` and `kind`.
    public var apiVersion = "batch/v1", kind = "Job"
    /// `metadata`.
    public var metadata: KubeObjectMeta
    /// `spec`.
    public var spec: Spec
}
