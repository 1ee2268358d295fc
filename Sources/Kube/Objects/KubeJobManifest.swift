/// The `batch/v1` Job that runs one request (``JobSpecBuilder/job(for:repoURL:branch:baseSha:remainingSeconds:)``).
package struct KubeJobManifest: Sendable, Encodable {
    /// `spec`.
    package struct Spec: Sendable, Encodable {
        /// `suspend`: created suspended, resumed once the Job's Secret exists.
        package var suspend: Bool
        /// `backoffLimit`, `activeDeadlineSeconds` and `ttlSecondsAfterFinished`.
        package var backoffLimit: Int, activeDeadlineSeconds: Int, ttlSecondsAfterFinished: Int
        /// `podFailurePolicy`.
        package var podFailurePolicy: PodFailurePolicy
        /// `template`: the pod.
        package var template: PodTemplate
    }

    /// `spec.podFailurePolicy`.
    package struct PodFailurePolicy: Sendable, Encodable {
        /// `rules`, in order.
        package var rules: [Rule]
    }

    /// One rule of the pod failure policy: its `action` when the pod's exit codes or conditions match.
    package struct Rule: Sendable, Encodable {
        /// `action` (`FailJob`, `Ignore`, …).
        package var action: String
        /// `onExitCodes`.
        package var onExitCodes: ExitCodes?
        /// `onPodConditions`.
        package var onPodConditions: [PodCondition]?
    }

    /// `onExitCodes` of a rule: a container's exit code compared with `values`.
    package struct ExitCodes: Sendable, Encodable {
        /// `containerName` and `operator` (`In`, `NotIn`).
        package var containerName: String, `operator`: String
        /// `values`.
        package var values: [Int]
    }

    /// One of `onPodConditions` of a rule.
    package struct PodCondition: Sendable, Encodable {
        /// The condition's `type` and `status`.
        package var type: String, status: String
    }

    /// `spec.template`.
    package struct PodTemplate: Sendable, Encodable {
        /// The pod's `metadata` (labels and annotations).
        package var metadata: KubeObjectMeta
        /// The pod's `spec`.
        package var spec: KubePodSpec
    }

    /// `apiVersion` and `kind`.
    package var apiVersion = "batch/v1", kind = "Job"
    /// `metadata`.
    package var metadata: KubeObjectMeta
    /// `spec`.
    package var spec: Spec
}
