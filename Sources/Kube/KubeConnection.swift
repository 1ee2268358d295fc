import Foundation

/// Where the Kubernetes API is and how to authenticate to it.
package struct KubeConnection: Sendable {
    /// `https://host:port` (or `http://` for a local test server).
    package var server: String
    /// The namespace Jobs are created in.
    package var namespace: String
    /// PEM of the CA that signs the API server's certificate; required for `https`.
    package var caPEM: String?
    /// A fixed bearer token.
    package var token: String?
    /// A file holding the bearer token, re-read every minute and after a 401 (service-account tokens rotate).
    package var tokenFile: String?
    /// PEM of a client certificate (chain) and its private key, for mutual TLS.
    package var clientCertificatePEM: String?
    package var clientKeyPEM: String?
    /// Every file the connection's secrets were read from (client key and certificate, CA, token file), so agents
    /// can be kept from them.
    package var secretFiles: [String] = []

    package init(
        server: String,
        namespace: String,
        caPEM: String? = nil,
        token: String? = nil,
        tokenFile: String? = nil,
        clientCertificatePEM: String? = nil,
        clientKeyPEM: String? = nil
    ) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.namespace = namespace
        self.caPEM = caPEM
        self.token = token
        self.tokenFile = tokenFile
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
    }

    /// The in-cluster service-account connection. Refuses to work without the CA (TLS is never skipped).
    package static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        accountDirectory: String = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) throws -> KubeConnection {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw KubeConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST is not set")
        }
        let port = environment["KUBERNETES_SERVICE_PORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "443"
        guard let ca = try? String(contentsOfFile: "\(accountDirectory)/ca.crt", encoding: .utf8), ca.contains("BEGIN CERTIFICATE") else {
            throw KubeConfigError("the service-account CA \(accountDirectory)/ca.crt is missing; refusing to talk to the API without verifying TLS")
        }
        let namespace =
            (try? String(contentsOfFile: "\(accountDirectory)/namespace", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? environment["DISPATCH_K8S_NAMESPACE"] ?? "default"
        return KubeConnection(
            server: "https://\(bracketed(host)):\(port)",
            namespace: namespace,
            caPEM: ca,
            tokenFile: "\(accountDirectory)/token"
        )
    }

    /// IPv6 literals go in brackets inside URLs.
    static func bracketed(_ host: String) -> String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
    }
}
