/// A `v1` `List` of manifests: what `dispatch k8s render-job` prints (``JobSpecBuilder/renderedList(for:repoURL:branch:baseSha:remainingSeconds:)``).
public struct KubeManifestList: Sendable, Encodable {
    /// One object of the list, encoded as the object itself.
    public enum Item: Sendable, Encodable {
        /// A Job.
        case job(KubeJobManifest)
        /// A Secret.
        case secret(KubeSecretManifest)

        /// Encodes the object itself (no wrapper).
        public func encode(to encoder: any Encoder) throws {
            switch self {
            case .job(let job): try job.encode(to: encoder)
            case .secret(let secret): try secret.encode(to: encoder)
            }
        }
    }

    /// `apiVersion` and `kind`.
    public var apiVersion = "v1", kind = "List"
    /// `items`, in order.
    public var items: [Item]
}
