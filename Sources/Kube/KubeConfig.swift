import Foundation
import Yams

/// A configuration problem: the cluster cannot be reached as configured (nothing was sent).
package struct KubeConfigError: Error, Sendable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// Reads a kubeconfig (`KUBECONFIG`, several files separated by `:`) into a ``KubeConnection``: the context
/// (current-context unless named), its cluster (server, CA data or file) and user (bearer token or token file,
/// or client certificate and key, as data or files), and its namespace. Files merge as kubectl merges them: the
/// first file to define a name or `current-context` wins; relative paths are relative to the file naming them.
package enum KubeConfig {
    /// The `KUBECONFIG` paths, or nil when it is unset or empty.
    package static func paths(environment: [String: String]) -> [String]? {
        guard let value = environment["KUBECONFIG"], !value.isEmpty else { return nil }
        let paths = value.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        return paths.isEmpty ? nil : paths
    }

    package static func connection(paths: [String], context name: String? = nil) throws -> KubeConnection {
        var clusters: [String: Entry] = [:]
        var users: [String: Entry] = [:]
        var contexts: [String: Entry] = [:]
        var current: String?
        var read: [String] = []
        for path in paths {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }  // kubectl skips missing files too
            read.append(path)
            let root: Node?
            do {
                // Composed with the default resolver, so scalars are typed as YAML types them (see `YAMLLoadedScalar`).
                root = try Yams.compose(yaml: text)
            } catch {
                throw KubeConfigError("kubeconfig \(path) is not valid YAML: \(error)")
            }
            guard let root, let document = try? YAMLDecoder().decode(KubeConfigDocument.self, from: root) else {
                throw KubeConfigError("kubeconfig \(path) is not a mapping")
            }
            let directory = (path as NSString).deletingLastPathComponent
            merge(document.clusters, body: \.cluster, into: &clusters, directory: directory)
            merge(document.users, body: \.user, into: &users, directory: directory)
            merge(document.contexts, body: \.context, into: &contexts, directory: directory)
            if current == nil, let value = document.currentContext, !value.isEmpty { current = value }
        }
        guard !read.isEmpty else { throw KubeConfigError("KUBECONFIG names no readable file: \(paths.joined(separator: ":"))") }
        guard let contextName = name ?? current else { throw KubeConfigError("kubeconfig \(read.joined(separator: ":")) sets no current-context") }
        guard let context = contexts[contextName] else { throw KubeConfigError("kubeconfig has no context \"\(contextName)\"") }
        guard let clusterName = context.string("cluster"), let cluster = clusters[clusterName] else {
            throw KubeConfigError(
                "context \"\(contextName)\" names cluster \"\(context.string("cluster") ?? "")\", which the kubeconfig does not define"
            )
        }
        var connection = try self.cluster(cluster, named: clusterName)
        connection.namespace = context.string("namespace") ?? "default"
        if let userName = context.string("user") {
            guard let user = users[userName] else {
                throw KubeConfigError("context \"\(contextName)\" names user \"\(userName)\", which the kubeconfig does not define")
            }
            try apply(user, named: userName, to: &connection)
        }
        return connection
    }

    /// One named cluster/user/context body and the directory of the file that defined it.
    struct Entry {
        /// The body's fields.
        var values: KubeConfigMapping
        /// The directory relative paths in the body are relative to.
        var directory: String

        /// The non-empty string field `key`.
        func string(_ key: String) -> String? { values.strings[key].flatMap { $0.isEmpty ? nil : $0 } }

        /// A file's contents (relative paths resolved against the defining kubeconfig's directory).
        func file(_ key: String, what: String) throws -> String? {
            guard let path = string(key) else { return nil }
            let resolved = path.hasPrefix("/") ? path : "\(directory)/\(path)"
            guard let text = try? String(contentsOfFile: resolved, encoding: .utf8) else {
                throw KubeConfigError("cannot read the \(what) file \(resolved) (\(key))")
            }
            return text
        }

        /// The file `key` names, resolved against the kubeconfig's directory (`nil` when the entry names none).
        func filePath(_ key: String) -> String? {
            string(key).map { $0.hasPrefix("/") ? $0 : "\(directory)/\($0)" }
        }

        /// Base64 `<key>-data`, else the file `<key>`.
        func pem(_ key: String, what: String) throws -> String? {
            if let encoded = string("\(key)-data") {
                guard let data = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters), let text = String(data: data, encoding: .utf8)
                else {
                    throw KubeConfigError("\(key)-data of the \(what) is not base64 of PEM text")
                }
                return text
            }
            return try file(key, what: what)
        }
    }

    /// Adds the items not defined yet (the first file to define a name wins), with their `body`.
    static func merge(
        _ items: [KubeConfigDocument.Item],
        body: KeyPath<KubeConfigDocument.Item, KubeConfigMapping?>,
        into entries: inout [String: Entry],
        directory: String
    ) {
        for item in items {
            guard let name = item.name, entries[name] == nil else { continue }
            entries[name] = Entry(values: item[keyPath: body] ?? KubeConfigMapping(), directory: directory)
        }
    }

    static func cluster(_ cluster: Entry, named name: String) throws -> KubeConnection {
        guard let server = cluster.string("server"), let url = URL(string: server), let scheme = url.scheme, let host = url.host else {
            throw KubeConfigError("cluster \"\(name)\" has no valid server URL")
        }
        if cluster.values.bools["insecure-skip-tls-verify"] == true {
            throw KubeConfigError("cluster \"\(name)\" sets insecure-skip-tls-verify; refusing to talk to the API without verifying TLS")
        }
        switch scheme {
        case "https":
            // Without a CA the system trust roots verify the server (as kubectl does); verification is never off.
            var connection = KubeConnection(
                server: server,
                namespace: "default",
                caPEM: try cluster.pem("certificate-authority", what: "cluster \"\(name)\" CA")
            )
            connection.secretFiles += [cluster.filePath("certificate-authority")].compactMap { $0 }
            return connection
        case "http":
            // Plain HTTP only to this machine (`kubectl proxy`): credentials never cross a network unencrypted.
            guard ["127.0.0.1", "localhost", "::1"].contains(host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))) else {
                throw KubeConfigError(
                    "cluster \"\(name)\" server \(server) is plain http to another host; only https, or http to this machine (kubectl proxy)"
                )
            }
            return KubeConnection(server: server, namespace: "default")
        default:
            throw KubeConfigError("cluster \"\(name)\" server \(server) is neither https nor http")
        }
    }

    static func apply(_ user: Entry, named name: String, to connection: inout KubeConnection) throws {
        for unsupported in ["exec", "auth-provider", "username"] where user.values.keys.contains(unsupported) {
            throw KubeConfigError(
                "user \"\(name)\" authenticates with \(unsupported), which agent-dispatch does not support; use a token, a token file or a client certificate"
            )
        }
        connection.token = user.string("token")
        if let tokenFile = user.string("tokenFile") {
            connection.tokenFile = tokenFile.hasPrefix("/") ? tokenFile : "\(user.directory)/\(tokenFile)"
        }
        connection.clientCertificatePEM = try user.pem("client-certificate", what: "user \"\(name)\" client certificate")
        connection.clientKeyPEM = try user.pem("client-key", what: "user \"\(name)\" client key")
        connection.secretFiles += ["tokenFile", "client-certificate", "client-key"].compactMap(user.filePath)
        if (connection.clientCertificatePEM == nil) != (connection.clientKeyPEM == nil) {
            throw KubeConfigError("user \"\(name)\" has a client certificate without its key, or a key without its certificate")
        }
    }
}
