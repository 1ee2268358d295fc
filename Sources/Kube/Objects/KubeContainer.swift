/// One of a pod's `containers`. Nil fields are left out.
public struct KubeContainer: Sendable, Encodable {
    /// One of `env`: a literal `value`, or a value from a Secret key or a field of the pod (`valueFrom`).
    public struct EnvVar: Sendable, Encodable {
        /// `name`.
        public var name: String
        /// `value` (kept when empty).
        public var value: String?
        /// `valueFrom`.
        public var valueFrom: Source?

        /// `name` set to `value`.
        static func literal(_ name: String, _ value: String) -> EnvVar { EnvVar(name: name, value: value) }

        /// `name` set from `key` of Secret `secret`; `optional` is left out when nil.
        static func secretKey(_ name: String, secret: String, key: String, optional: Bool? = nil) -> EnvVar {
            EnvVar(name: name, valueFrom: Source(secretKeyRef: SecretKeyRef(name: secret, key: key, optional: optional)))
        }

        /// `name` set from the pod's field `path` (`metadata.namespace`).
        static func field(_ name: String, path: String) -> EnvVar {
            EnvVar(name: name, valueFrom: Source(fieldRef: FieldRef(fieldPath: path)))
        }
    }

    /// `valueFrom` of an env var.
    public struct Source: Sendable, Encodable {
        /// `secretKeyRef`.
        public var secretKeyRef: SecretKeyRef?
        /// `fieldRef`.
        public var fieldRef: FieldRef?
    }

    /// `secretKeyRef`: key `key` of Secret `name`.
    public struct SecretKeyRef: Sendable, Encodable {
        /// `name` (of the Secret) and `key`.
        public var name: String, key: String
        /// `optional`: a missing Secret or key leaves the variable unset instead of failing the pod.
        public var optional: Bool?
    }

    /// `fieldRef`: a field of the pod.
    public struct FieldRef: Sendable, Encodable {
        /// `fieldPath`.
        public var fieldPath: String
    }

    /// `resources`.
    public struct Resources: Sendable, Encodable {
        /// `requests` and `limits`.
        public var requests: ResourceList, limits: ResourceList
    }

    /// `requests` or `limits` of the resources.
    public struct ResourceList: Sendable, Encodable {
        /// `cpu`, `memory` and `ephemeral-storage`.
        public var cpu: String, memory: String, ephemeralStorage: String

        private enum CodingKeys: String, CodingKey {
            case cpu, memory
            case ephemeralStorage = "ephemeral-storage"
        }
    }

    /// The container's `securityContext`.
    public struct SecurityContext: Sendable, Encodable {
        /// `allowPrivilegeEscalation`, `runAsNonRoot` and `readOnlyRootFilesystem`.
        public var allowPrivilegeEscalation: Bool, runAsNonRoot: Bool, readOnlyRootFilesystem: Bool
        /// `capabilities`.
        public var capabilities: Capabilities
        /// `seccompProfile`.
        public var seccompProfile: KubePodSpec.SeccompProfile
    }

    /// `capabilities` of the security context.
    public struct Capabilities: Sendable, Encodable {
        /// `drop`.
        public var drop: [String]
    }

    /// One of `volumeMounts`.
    public struct VolumeMount: Sendable, Encodable {
        /// `name` (of the volume) and `mountPath`.
        public var name: String, mountPath: String
        /// `readOnly`.
        public var readOnly: Bool?
    }

    /// `name`, `image` and `imagePullPolicy`.
    public var name: String, image: String, imagePullPolicy: String
    /// `args`.
    public var args: [String]
    /// `env`, in order.
    public var env: [EnvVar]
    /// `resources`.
    public var resources: Resources
    /// `securityContext`.
    public var securityContext: SecurityContext
    /// `terminationMessagePolicy`.
    public var terminationMessagePolicy: String
    /// `volumeMounts`.
    public var volumeMounts: [VolumeMount]
}
