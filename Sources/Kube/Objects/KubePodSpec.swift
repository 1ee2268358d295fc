/// The pod `spec` of a Job's template. Nil fields are left out.
package struct KubePodSpec: Sendable, Encodable {
    /// The pod's `securityContext`.
    package struct SecurityContext: Sendable, Encodable {
        /// `runAsNonRoot`.
        package var runAsNonRoot: Bool
        /// `runAsUser`, `runAsGroup` and `fsGroup`.
        package var runAsUser: Int, runAsGroup: Int, fsGroup: Int
        /// `seccompProfile`.
        package var seccompProfile: SeccompProfile
    }

    /// A `seccompProfile` (of the pod or of a container).
    package struct SeccompProfile: Sendable, Encodable {
        /// `type` (`RuntimeDefault`).
        package var type: String
    }

    /// One of `volumes`: an `emptyDir` or a `secret`.
    package struct Volume: Sendable, Encodable {
        /// `name`, which volume mounts refer to.
        package var name: String
        /// `emptyDir`.
        package var emptyDir: EmptyDir?
        /// `secret`.
        package var secret: SecretSource?
    }

    /// An `emptyDir` volume source.
    package struct EmptyDir: Sendable, Encodable {
        /// `sizeLimit`.
        package var sizeLimit: String
    }

    /// A `secret` volume source: every key of the Secret, or only its `items`.
    package struct SecretSource: Sendable, Encodable {
        /// `secretName`.
        package var secretName: String
        /// `defaultMode` (file mode of the keys' files).
        package var defaultMode: Int
        /// `items`.
        package var items: [KeyToPath]?
    }

    /// One of `items` of a secret volume: the file `path` of key `key`.
    package struct KeyToPath: Sendable, Encodable {
        /// `key` and `path`.
        package var key: String, path: String
    }

    /// `restartPolicy`.
    package var restartPolicy: String
    /// `automountServiceAccountToken` and `enableServiceLinks`.
    package var automountServiceAccountToken: Bool, enableServiceLinks: Bool
    /// `terminationGracePeriodSeconds`.
    package var terminationGracePeriodSeconds: Int
    /// `securityContext`.
    package var securityContext: SecurityContext
    /// `containers`.
    package var containers: [KubeContainer]
    /// `volumes`.
    package var volumes: [Volume]
    /// `serviceAccountName`.
    package var serviceAccountName: String?
}
