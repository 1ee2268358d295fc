/// The `metadata` of an object agent-dispatch creates (a Job, its pod template, a Secret). Nil fields are left out.
public struct KubeObjectMeta: Sendable, Encodable {
    /// An `ownerReferences` entry: the object is garbage-collected with its owner.
    public struct OwnerReference: Sendable, Encodable {
        /// The owner's `apiVersion`, `kind`, `name` and `uid`.
        public var apiVersion: String, kind: String, name: String, uid: String
        /// `blockOwnerDeletion` and `controller`.
        public var blockOwnerDeletion: Bool, controller: Bool
    }

    /// `name` and `namespace` (none in a pod template).
    public var name: String?, namespace: String?
    /// `labels` and `annotations`.
    public var labels: [String: String]?, annotations: [String: String]?
    /// `ownerReferences`.
    public var ownerReferences: [OwnerReference]?
}
