import ArgumentParser
import DispatchCore
import Dispatcher
import Execution
import Foundation
import Kube

/// `dispatch k8s`: Kubernetes helpers.
struct K8sCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "k8s", abstract: "Kubernetes backend helpers.", subcommands: [RenderJob.self])

    /// Prints the Job manifest a request would create.
    struct RenderJob: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "render-job",
            abstract: "Print every object a request would create — its Job and its own Secret — as a List (JSON, which is also YAML).",
            discussion: """
                Cluster settings come from DISPATCH_K8S_NAMESPACE, DISPATCH_K8S_IMAGE, DISPATCH_K8S_SECRET, DISPATCH_K8S_GIT_SECRET and \
                DISPATCH_CALLBACK_URL. Secret values are redacted.
                """
        )

        @Option(help: "The request JSON (CONTRACT §1).") var request: String

        func run() async throws {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: request))
            } catch {
                throw ValidationError("cannot read --request \(request): \(error.localizedDescription)")
            }
            let parsed: DispatchRequest
            do {
                parsed = try RequestValidator.validate(json: data)
            } catch {
                throw ValidationError(error.description)
            }
            let configuration = DispatchConfiguration()
            // The callback token shown is redacted, so any signing key will do; the admin token is not needed here.
            let settings = K8sSettings.resolve(configuration, adminToken: "render-job")
            let source: JobSource
            do {
                source = try JobSource.resolve(parsed, defaultCwd: configuration.defaultWorkdir)
            } catch {
                throw ValidationError("\(error)")
            }
            let objects = JobSpecBuilder(settings: settings).renderedList(
                for: parsed,
                repoURL: source.repoURL,
                branch: source.branch,
                baseSha: source.baseSha,
                remainingSeconds: Int(parsed.timeout.rounded(.up))
            )
            print(JobSpecBuilder.render(objects))
        }
    }
}

/// Where a k8s Job clones from, and the cluster settings, from the request and the environment.
enum K8sSettings {
    /// The k8s backend: from `KUBECONFIG` when set, else the in-cluster service account; `nil` when neither
    /// applies. Throws when the configuration is there but unusable (say why, never fall back silently).
    static func backend(
        _ configuration: DispatchConfiguration,
        adminToken: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KubeBackend? {
        var connection: KubeConnection
        if let paths = KubeConfig.paths(environment: environment) {
            connection = try KubeConfig.connection(paths: paths)
        } else if let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty {
            connection = try KubeConnection.inCluster(environment: environment)
        } else {
            return nil
        }
        if let namespace = environment["DISPATCH_K8S_NAMESPACE"], !namespace.isEmpty { connection.namespace = namespace }
        guard let adminToken else {
            throw KubeConfigError("no service token to sign the Jobs' callback tokens with (set DISPATCH_TOKEN or DISPATCH_TOKEN_FILE)")
        }
        return KubeBackend(
            client: try KubeClient(connection: connection),
            settings: resolve(configuration, adminToken: adminToken, namespace: connection.namespace),
            logDirectory: "\(configuration.stateDir)/k8s-logs",
            defaultWorkdir: configuration.defaultWorkdir
        )
    }

    /// The backend for commands that serve local requests too: an unusable k8s configuration fails only the
    /// k8s requests, with the reason.
    static func backendOrReason(_ configuration: DispatchConfiguration, adminToken: String?) -> (any ExecutionBackend)? {
        do {
            return try backend(configuration, adminToken: adminToken)
        } catch {
            return UnavailableKubeBackend(reason: "\(error)")
        }
    }

    /// Job settings for `namespace` (default: `DISPATCH_K8S_NAMESPACE` or `default`).
    static func resolve(_ configuration: DispatchConfiguration, adminToken: String, namespace: String? = nil) -> JobSpecBuilder.Settings {
        let namespace = namespace ?? configuration.k8sNamespace
        return JobSpecBuilder.Settings(
            namespace: namespace,
            image: configuration.k8sImage ?? "agent-dispatch:latest",
            secretName: configuration.k8sSecret ?? "agent-dispatch-secrets",
            callbackURL: configuration.callbackURL ?? "http://agent-dispatch.\(namespace).svc:3111/internal/agent-result",
            callbackTokens: CallbackTokens(adminToken: adminToken),
            gitSecretName: configuration.k8sGitSecret
        )
    }
}
