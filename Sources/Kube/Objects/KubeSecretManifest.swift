/// A `v1` Secret agent-dispatch creates: a Job's own Secret (``JobSpecBuilder/secret(for:jobUID:)``). Nil fields
/// are left out.
public struct KubeSecretManifest: Sendable, Encodable {
    /// `apiVersion`, `kind` and `type`.
    public var apiVersion = "v1", kind = "Secret", type = "Opaque"
    /// `metadata`.
    public var metadata: KubeObjectMeta
    /// `data`: base64 values by key.
    public var data: [String: String]?
    /// `stringData`: plain values by key (what `render-job` shows in place of `data`, redacted).
    public var stringData: [String: String]?
}
