/// One of a pod's `containers`. Nil fields are left out.
package struct KubeContainer: Sendable, Encodable {
    /// One of `env`: a literal `value`, or a value from a Secret key or a field of the pod (`valueFrom`).
    package struct EnvVar: Sendable, Encodable {
        /// `name`.
        package var name: String
        /// `value` (kept when empty).
        package var value: String?
        /// `valueFrom`.
        package var valueFrom: Source?

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
    package struct Source: Sendable, Encodable {
        /// `secretKeyRef`.
        package var secretKeyRef: SecretKeyRef?
        /// `fieldRef`.
        package var fieldRef: FieldRef?
    }

    /// `secretKeyRef`: key `key` of Secret `name`.
    package struct SecretKeyRef: Sendable, Encodable {
        /// `name` (of the Secret) and `key`.
        package var name: String, key: String
        /// `optional`: a missing Secret or key leaves the variable unset instead of failing the pod.
        package var optional: Bool?
    }

    /// `fieldRef`: a field of the pod.
    package struct FieldRef: Sendable, Encodable {
        /// `fieldPath`.
        package var fieldPath: String
    }

    /// `resources`.
    package struct Resources: Sendable, Encodable {
        /// `requests` and `limits`.
        package var requests: ResourceList, limits: ResourceList
    }

    /// `requests` or `limits` of the resources.
    package struct ResourceList: Sendable, Encodable {
        /// `cpu`, `memory` and `ephemeral-storage`.
        package var cpu: String, memory: String, ephemeralStorage: String

        private enum CodingKeys: String, CodingKey {
            case cpu, memory
            case ephemeralStorage = "ephemeral-storage"
        }
    }

    /// The container's `securityContext`.
    package struct SecurityContext: Sendable, Encodable {
        /// `allowPrivilegeEscalation`, `runAsNonRoot` and `readOnlyRootFilesystem`.
        package var allowPrivilegeEscalation: Bool, runAsNonRoot: Bool, readOnlyRootFilesystem: Bool
        /// `capabilities`.
        package var capabilities: Capabilities
        /// `seccompProfile`.
        package var seccompProfile: KubePodSpec.SeccompProfile
    }

    /// `capabilities` of the security context.
    package struct Capabilities: Sendable, Encodable {
        /// `drop`.
        package var drop: [String]
    }

    /// One of `volumeMounts`.
    package struct VolumeMount: Sendable, Encodable {
        /// `name` (of the volume) and `mountPath`.
        package var name: String, mountPath: String
        /// `readOnly`.
        package var readOnly: Bool?
    }

    /// `name`, `image` and `imagePullPolicy`.
    package var name: String, image: String, imagePullPolicy: String
    /// `args`.
    package var args: [String]
    /// `env`, in order.
    package var env: [EnvVar]
    /// `resources`.
    package var resources: Resources
    /// `securityContext`.
    package var securityContext: SecurityContext
    /// `terminationMessagePolicy`.
    package var terminationMessagePolicy: String
    /// `volumeMounts`.
    package var volumeMounts: [VolumeMount]
}
