/// A `v1` Secret agent-dispatch creates: a Job's own Secret (``JobSpecBuilder/secret(for:jobUID:)``). Nil fields
/// are left out.
package struct KubeSecretManifest: Sendable, Encodable {
    /// `apiVersion`, `kind` and `type`.
    package var apiVersion = "v1", kind = "Secret", type = "Opaque"
    /// `metadata`.
    package var metadata: KubeObjectMeta
    /// `data`: base64 values by key.
    package var data: [String: String]?
    /// `stringData`: plain values by key (what `render-job` shows in place of `data`, redacted).
    package var stringData: [String: String]?
}
