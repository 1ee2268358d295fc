/// A `v1` `List` of manifests: what `dispatch k8s render-job` prints (``JobSpecBuilder/renderedList(for:repoURL:branch:baseSha:remainingSeconds:)``).
package struct KubeManifestList: Sendable, Encodable {
    /// One object of the list, encoded as the object itself.
    package enum Item: Sendable, Encodable {
        /// A Job.
        case job(KubeJobManifest)
        /// A Secret.
        case secret(KubeSecretManifest)

        /// Encodes the object itself (no wrapper).
        package func encode(to encoder: any Encoder) throws {
            switch self {
            case .job(let job): try job.encode(to: encoder)
            case .secret(let secret): try secret.encode(to: encoder)
            }
        }
    }

    /// `apiVersion` and `kind`.
    package var apiVersion = "v1", kind = "List"
    /// `items`, in order.
    package var items: [Item]
}
