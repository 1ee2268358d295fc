/// A JSON merge patch (`application/merge-patch+json`) of a Job's `spec.suspend`: `{"spec":{"suspend":false}}`
/// resumes a suspended Job.
struct KubeJobSuspendPatch: Sendable, Encodable {
    /// The patched `spec`.
    struct Spec: Sendable, Encodable {
        /// `suspend`.
        var suspend: Bool
    }

    /// `spec`.
    var spec: Spec

    /// The patch setting `spec.suspend` to `suspend`.
    init(suspend: Bool) { spec = Spec(suspend: suspend) }
}
