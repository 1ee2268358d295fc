/// The pod `spec` of a Job's template. Nil fields are left out.
public struct KubePodSpec: Sendable, Encodable {
    /// The pod's `securityContext`.
    public struct SecurityContext: Sendable, Encodable {
        /// `runAsNonRoot`.
        public var runAsNonRoot: Bool
        /// `runAsUser`, `runAsGroup` and `fsGroup`.
        public var runAsUser: Int, runAsGroup: Int, fsGroup: Int
        /// `seccompProfile`.
        public var seccompProfile: SeccompProfile
    }

    /// A `seccompProfile` (of the pod or of a container).
    public struct SeccompProfile: Sendable, Encodable {
        /// `type` (`RuntimeDefault`).
        public var type: String
    }

    /// One of `volumes`: an `emptyDir` or a `secret`.
    public struct Volume: Sendable, Encodable {
        /// `name`, which volume mounts refer to.
        public var name: String
        /// `emptyDir`.
        public var emptyDir: EmptyDir?
        /// `secret`.
        public var secret: SecretSource?
    }

    /// An `emptyDir` volume source.
    public struct EmptyDir: Sendable, Encodable {
        /// `sizeLimit`.
        public var sizeLimit: String
    }

    /// A `secret` volume source: every key of the Secret, or only its `items`.
    public struct SecretSource: Sendable, Encodable {
        /// `secretName`.
        public var secretName: String
        /// `defaultMode` (file mode of the keys' files).
        public var defaultMode: Int
        /// `items`.
        public var items: [KeyToPath]?
    }

    /// One of `items` of a secret volume: the file `path` of key `key`.
    public struct KeyToPath: Sendable, Encodable {
        /// `key` and `path`.
        public var key: String, path: String
    }

    /// `restartPolicy`.
    public var restartPolicy: String
    /// `automountServiceAccountToken` and `enableServiceLinks`.
    public var automountServiceAccountToken: Bool, enableServiceLinks: Bool
    /// `terminationGracePeriodSeconds`.
    public var terminationGracePeriodSeconds: Int
    /// `securityContext`.
    public var securityContext: SecurityContext
    /// `containers`.
    public var containers: [KubeContainer]
    /// `volumes`.
    public var volumes: [Volume]
    /// `serviceAccountName`.
    public var serviceAccountName: String?
}
