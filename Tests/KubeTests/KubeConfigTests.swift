import DispatchTestSupport
import Execution
import Foundation
import Hummingbird
import HummingbirdTLS
import Kube
import NIOSSL
import Testing

/// kubeconfig loading, and the client over real TLS: CA verification and client-certificate authentication.
@Suite struct KubeConfigTests {
    let dir = TempDir("kubeconfig")

    func write(_ name: String, _ text: String) throws -> String {
        let path = dir.child(name)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    @Test func contextClusterUserAndNamespaceMergeAsKubectlDoes() throws {
        _ = try write("conf/ca.crt", Self.pem)
        let first = try write(
            "conf/first.yaml",
            """
            apiVersion: v1
            kind: Config
            current-context: work
            clusters:
            - name: prod
              cluster:
                server: https://api.example.test:6443
                certificate-authority: ca.crt
            contexts:
            - name: work
              context: {cluster: prod, user: robot, namespace: agents}
            users:
            - name: robot
              user:
                tokenFile: token
            """
        )
        let second = try write(
            "second.yaml",
            """
            current-context: other
            clusters:
            - name: prod
              cluster: {server: "https://ignored.example.test"}
            - name: spare
              cluster: {server: "https://spare.example.test", certificate-authority-data: \(Data(Self.pem.utf8).base64EncodedString())}
            contexts:
            - name: other
              context: {cluster: spare, user: robot}
            users:
            - name: robot
              user: {token: ignored}
            """
        )
        let connection = try KubeConfig.connection(paths: [dir.child("missing.yaml"), first, second])
        #expect(connection.server == "https://api.example.test:6443", "the first file to define a name wins")
        #expect(connection.namespace == "agents")
        #expect(connection.caPEM == Self.pem, "certificate-authority is relative to the file naming it")
        #expect(connection.tokenFile == dir.child("conf/token"))
        #expect(connection.token == nil)
        #expect(Set(connection.secretFiles) == [dir.child("conf/ca.crt"), dir.child("conf/token")], "the files agents must not see")

        let other = try KubeConfig.connection(paths: [first, second], context: "other")
        #expect(other.server == "https://spare.example.test")
        #expect(other.caPEM == Self.pem)
        #expect(other.namespace == "default")
        #expect(KubeConfig.paths(environment: ["KUBECONFIG": "\(first)::\(second)"]) == [first, second])
        #expect(KubeConfig.paths(environment: ["KUBECONFIG": ""]) == nil)
    }

    @Test(arguments: [
        ("clusters: [{name: c, cluster: {server: 'https://x', insecure-skip-tls-verify: true}}]", "insecure-skip-tls-verify"),
        ("clusters: [{name: c, cluster: {server: 'http://10.1.2.3:8080'}}]", "plain http to another host"),
        ("users: [{name: u, user: {exec: {command: aws}}}]", "exec"),
        ("users: [{name: u, user: {token: t, username: null}}]", "username"),
        ("users: [{name: u, user: {client-certificate-data: \(Data(pem.utf8).base64EncodedString())}}]", "without its key"),
        ("contexts: [{name: ctx, context: {cluster: nowhere, user: u}}]", "does not define"),
        ("current-context: absent", "no context \"absent\""),
        (
            "clusters: [{name: c, cluster: {server: 'https://x', certificate-authority: /nonexistent/ca.crt}}]",
            "cannot read the cluster \"c\" CA file"
        ),
        ("clusters: [ {name: c", "not valid YAML"),
    ])
    func unusableConfigurationsSayWhy(override: String, expected: String) throws {
        let base = """
            current-context: ctx
            clusters: [{name: c, cluster: {server: 'https://x'}}]
            users: [{name: u, user: {token: t}}]
            contexts: [{name: ctx, context: {cluster: c, user: u}}]
            """
        // The override's top-level key replaces the base's.
        let key = override.split(separator: ":").first.map(String.init) ?? ""
        let text = base.split(separator: "\n").filter { !$0.hasPrefix(key + ":") }.joined(separator: "\n") + "\n" + override + "\n"
        let path = try write("bad-\(UUID().uuidString.prefix(6)).yaml", text)
        #expect {
            _ = try KubeConfig.connection(paths: [path])
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    /// Scalars are read as YAML types them (as `Yams.load` did): a number is no token, a quoted "true" no boolean.
    @Test func scalarsAreTypedAsYAMLTypesThem() throws {
        let path = try write(
            "typed.yaml",
            """
            current-context: ctx
            clusters: [{name: c, cluster: {server: 'https://x', insecure-skip-tls-verify: "true"}}]
            users: [{name: u, user: {token: 12345}}]
            contexts: [{name: ctx, context: {cluster: c, user: u, namespace: "2024"}}]
            """
        )
        let connection = try KubeConfig.connection(paths: [path])
        #expect(connection.server == "https://x")
        #expect(connection.token == nil)
        #expect(connection.namespace == "2024")
    }

    @Test func noReadableFileIsAnError() {
        #expect(throws: KubeConfigError.self) { try KubeConfig.connection(paths: [dir.child("nope")]) }
    }

    // MARK: TLS

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
    struct Authority {
        let caPEM: String, serverCert: String, serverKey: String, clientCert: String, clientKey: String

        static func make(in dir: TempDir, name: String) throws -> Authority {
            let d = dir.child(name)
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            func openssl(_ arguments: [String]) throws {
                let result = try CommandRunner.run("/usr/bin/env", ["openssl"] + arguments, cwd: d)
                guard result.exitCode == 0 else { throw KubeConfigError("openssl \(arguments.first ?? ""): \(result.stderr)") }
            }
            try openssl([
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                "-days", "2", "-subj", "/CN=\(name)-ca",
            ])
            try "subjectAltName=IP:127.0.0.1\n".write(toFile: "\(d)/server.ext", atomically: true, encoding: .utf8)
            try "extendedKeyUsage=clientAuth\n".write(toFile: "\(d)/client.ext", atomically: true, encoding: .utf8)
            for (who, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=robot/O=agent-dispatch")] {
                try openssl([
                    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(who).key", "-out", "\(who).csr",
                    "-subj", subject,
                ])
                try openssl([
                    "x509", "-req", "-in", "\(who).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "\(who).crt",
                    "-days", "2", "-extfile", "\(who).ext",
                ])
            }
            func read(_ file: String) throws -> String { try String(contentsOfFile: "\(d)/\(file)", encoding: .utf8) }
            return Authority(
                caPEM: try read("ca.crt"),
                serverCert: try read("server.crt"),
                serverKey: try read("server.key"),
                clientCert: try read("client.crt"),
                clientKey: try read("client.key")
            )
        }
    }

    /// Serves the fake API over TLS that demands a client certificate signed by `authority`.
    func withTLSAPI(_ authority: Authority, _ body: @Sendable (Int) async throws -> Void) async throws {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(authority.serverCert.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(authority.serverKey.utf8), format: .pem))
        )
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(authority.caPEM.utf8)))
        tls.certificateVerification = .noHostnameVerification  // a client certificate is required
        let api = FakeKubernetesAPI(requireToken: false)
        let app = Application(
            router: api.router(),
            server: try .tls(.http1(), tlsConfiguration: tls),
            configuration: .init(address: .hostname("127.0.0.1", port: 0))
        )
        try await app.test(.live) { client in try await body(client.port!) }
    }

    func kubeconfig(port: Int, ca: String, clientCert: String?, clientKey: String?) throws -> String {
        let b64 = { (text: String) in Data(text.utf8).base64EncodedString() }
        var user = "{}"
        if let clientCert, let clientKey { user = "{client-certificate-data: \(b64(clientCert)), client-key-data: \(b64(clientKey))}" }
        return try write(
            "tls-\(UUID().uuidString.prefix(6)).yaml",
            """
            current-context: tls
            clusters: [{name: local, cluster: {server: 'https://127.0.0.1:\(port)', certificate-authority-data: \(b64(ca))}}]
            users: [{name: robot, user: \(user)}]
            contexts: [{name: tls, context: {cluster: local, user: robot, namespace: agents}}]
            """
        )
    }

    @Test func theClientVerifiesTheServerAndAuthenticatesWithItsCertificate() async throws {
        let authority = try Authority.make(in: dir, name: "cluster")
        let stranger = try Authority.make(in: dir, name: "stranger")
        try await withTLSAPI(authority) { port in
            // CA data + client certificate: the API answers.
            let good = try KubeConfig.connection(paths: [
                kubeconfig(port: port, ca: authority.caPEM, clientCert: authority.clientCert, clientKey: authority.clientKey)
            ])
            let client = try KubeClient(connection: good)
            let listed = try await client.jobs(labelSelector: "a=b")
            #expect(listed.items.isEmpty)
            await client.shutdown()

            // No client certificate: the server refuses the handshake.
            let anonymous = try KubeClient(
                connection: KubeConfig.connection(paths: [kubeconfig(port: port, ca: authority.caPEM, clientCert: nil, clientKey: nil)])
            )
            await #expect(throws: KubeError.self) { _ = try await anonymous.jobs(labelSelector: "a=b") }
            await anonymous.shutdown()

            // A CA that did not sign the server's certificate: the client refuses the server.
            let misled = try KubeClient(
                connection: KubeConfig.connection(
                    paths: [kubeconfig(port: port, ca: stranger.caPEM, clientCert: authority.clientCert, clientKey: authority.clientKey)])
            )
            await #expect {
                _ = try await misled.jobs(labelSelector: "a=b")
            } throws: { error in
                "\(error)".lowercased().contains("certificate") || "\(error)".contains("handshake")
            }
            await misled.shutdown()
        }
    }
}
