/// The `metadata` of an object agent-dispatch creates (a Job, its pod template, a Secret). Nil fields are left out.
package struct KubeObjectMeta: Sendable, Encodable {
    /// An `ownerReferences` entry: the object is garbage-collected with its owner.
    package struct OwnerReference: Sendable, Encodable {
        /// The owner's `apiVersion`, `kind`, `name` and `uid`.
        package var apiVersion: String, kind: String, name: String, uid: String
        /// `blockOwnerDeletion` and `controller`.
        package var blockOwnerDeletion: Bool, controller: Bool
    }

    /// `name` and `namespace` (none in a pod template).
    package var name: String?, namespace: String?
    /// `labels` and `annotations`.
    package var labels: [String: String]?, annotations: [String: String]?
    /// `ownerReferences`.
    package var ownerReferences: [OwnerReference]?
}
