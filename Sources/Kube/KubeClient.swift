import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// The subset of the Kubernetes API the controller needs, over AsyncHTTPClient (never a kubectl subprocess).
/// 429 and 5xx are retried with backoff; `Status` bodies become ``KubeError``s.
package final class KubeClient: Sendable {
    package let connection: KubeConnection
    private let http: HTTPClient
    private let watchHTTP: HTTPClient
    private let cachedToken = Mutex<(value: String?, readAt: ContinuousClock.Instant?)>((nil, nil))

    /// How many times a retryable request is tried.
    static let attempts = 4

    package init(connection: KubeConnection) throws {
        self.connection = connection
        var configuration = HTTPClient.Configuration()
        if connection.server.hasPrefix("https://") {
            // Full verification always: the given CA, else the system trust roots.
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                if let pem = connection.caPEM { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))) }
                if let certificate = connection.clientCertificatePEM, let key = connection.clientKeyPEM {
                    tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) }
                    tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
                }
            } catch {
                throw KubeConfigError("cannot use the TLS material for \(connection.server): \(error)")
            }
            configuration.tlsConfiguration = tls
        }
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(60))
        // An unreachable API fails the attempt at once; `send` retries with its own bounded backoff.
        configuration.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        // Watches and log follows sit idle between events for minutes; only the server should end them. Each
        // holds its connection for its whole life (over HTTP/1), so the pool must not cap them at its default of
        // 8 per host: the 9th running Job's stream would wait for a connection that never frees.
        configuration.timeout.read = .seconds(Int64(Self.maxWatchSeconds) + 60)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = Self.maxStreams
        watchHTTP = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The longest watch this client asks for (`timeoutSeconds`).
    static let maxWatchSeconds = 300
    /// Long-lived streams (one watch, one log follow per running Job) open at once.
    static let maxStreams = 512

    /// Closes the connection pool.
    package func shutdown() async {
        try? await http.shutdown()
        try? await watchHTTP.shutdown()
    }

    var jobsPath: String { "/apis/batch/v1/namespaces/\(connection.namespace)/jobs" }
    var corePath: String { "/api/v1/namespaces/\(connection.namespace)" }

    /// Creates a Job. On 409 the existing Job is adopted only if its request-id annotation matches.
    package func createJob(_ manifest: KubeJobManifest, requestId: String) async throws -> KubeJob {
        let body = try JSONEncoder().encode(manifest)
        do {
            return try await object(KubeJob.self, .POST, jobsPath, body: body)
        } catch let error as KubeError where error.status == 409 {
            let name = manifest.metadata.name ?? ""
            guard let existing = try await job(name) else { throw error }
            guard existing.annotations[JobSpecBuilder.requestIdAnnotation] == requestId else {
                throw KubeError(
                    status: 409,
                    reason: "AlreadyExists",
                    message: "Job \(name) exists for request \(existing.annotations[JobSpecBuilder.requestIdAnnotation] ?? "?"), not \(requestId)"
                )
            }
            return existing
        }
    }

    /// Creates a Secret. One already there (a crash before resuming, or a leftover owned by an older Job of that
    /// name) is replaced, since the Role may not read it: its owner or data could be stale.
    package func createSecret(_ manifest: KubeSecretManifest, requestId: String) async throws {
        let body = try JSONEncoder().encode(manifest)
        let name = manifest.metadata.name ?? ""
        do {
            _ = try await object(KubeAnyObject.self, .POST, "\(corePath)/secrets", body: body)
        } catch let error as KubeError where error.status == 409 {
            do {
                _ = try await send(.DELETE, "\(corePath)/secrets/\(name)")
            } catch let gone as KubeError where gone.status == 404 {}
            _ = try await object(KubeAnyObject.self, .POST, "\(corePath)/secrets", body: body)
        }
    }

    /// Lets a suspended Job start its pod (a JSON merge patch of `spec.suspend`).
    package func resumeJob(_ name: String) async throws {
        let patch = try JSONEncoder().encode(KubeJobSuspendPatch(suspend: false))
        _ = try await object(KubeAnyObject.self, .PATCH, "\(jobsPath)/\(name)", body: patch, contentType: "application/merge-patch+json")
    }

    /// The Job, or `nil` when it does not exist.
    package func job(_ name: String) async throws -> KubeJob? {
        do {
            return try await object(KubeJob.self, .GET, "\(jobsPath)/\(name)")
        } catch let error as KubeError where error.status == 404 {
            return nil
        }
    }

    /// Jobs matching a label selector, and the list's resourceVersion (to start a watch from).
    package func jobs(labelSelector: String) async throws -> (items: [KubeJob], resourceVersion: String?) {
        let list = try await object(KubeObjectList<KubeJob>.self, .GET, "\(jobsPath)?labelSelector=\(Self.escape(labelSelector))")
        return (list.items, list.resourceVersion)
    }

    /// Pods of a Job (`batch.kubernetes.io/job-name=<name>`).
    package func pods(ofJob name: String) async throws -> [KubePod] {
        let path = "\(corePath)/pods?labelSelector=\(Self.escape("batch.kubernetes.io/job-name=\(name)"))"
        return try await object(KubeObjectList<KubePod>.self, .GET, path).items
    }

    /// The tail of a pod's log.
    package func podLog(_ pod: String, tailLines: Int? = nil, limitBytes: Int? = nil) async throws -> String {
        var query: [String] = []
        if let tailLines { query.append("tailLines=\(tailLines)") }
        if let limitBytes { query.append("limitBytes=\(limitBytes)") }
        let path = "\(corePath)/pods/\(pod)/log" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        return String(decoding: try await send(.GET, path).body, as: UTF8.self)
    }

    /// Events about an object (Job or Pod), oldest first.
    package func events(for name: String) async throws -> [KubeEvent] {
        let path = "\(corePath)/events?fieldSelector=\(Self.escape("involvedObject.name=\(name)"))"
        return try await object(KubeObjectList<KubeEvent>.self, .GET, path).items
    }

    /// Deletes a Job and (through `propagationPolicy=Background`) its pods; an absent Job is not an error.
    package func deleteJob(_ name: String) async throws {
        do {
            _ = try await send(.DELETE, "\(jobsPath)/\(name)?propagationPolicy=Background")
        } catch let error as KubeError where error.status == 404 {
            return
        }
    }

    /// Watches Jobs matching `labelSelector` from `resourceVersion`: one event per change until the server
    /// closes the stream (after `timeoutSeconds`, or earlier). An expired resourceVersion ends the stream with a
    /// 410 ``KubeError`` (the caller lists again and re-watches from the list's resourceVersion). The request is
    /// made by the first `next()`, in the iterating task: nothing runs unless someone reads.
    package func watchJobs(
        labelSelector: String,
        resourceVersion: String?,
        timeoutSeconds: Int = 240
    ) -> KubeWatchEvents {
        let timeoutSeconds = min(timeoutSeconds, Self.maxWatchSeconds)
        var query = ["watch=1", "allowWatchBookmarks=true", "timeoutSeconds=\(timeoutSeconds)", "labelSelector=\(Self.escape(labelSelector))"]
        if let resourceVersion { query.append("resourceVersion=\(Self.escape(resourceVersion))") }
        let path = "\(jobsPath)?" + query.joined(separator: "&")
        return KubeWatchEvents(chunks: KubeBodyChunks(client: self, path: path, timeout: .seconds(Int64(timeoutSeconds) + 30)))
    }

    /// Follows a pod's log (`follow=true`) from its beginning: chunks as the container writes them, until the
    /// container ends or the stream breaks. Like ``watchJobs(labelSelector:resourceVersion:timeoutSeconds:)``, read
    /// in the iterating task.
    package func followPodLog(_ pod: String) -> KubeBodyChunks {
        KubeBodyChunks(client: self, path: "\(corePath)/pods/\(pod)/log?follow=true", timeout: .seconds(24 * 3600))
    }

    /// GETs `path` on the long-lived client (re-reading the token once after a 401) and returns the body of a 2xx
    /// answer; any other answer is a ``KubeError``.
    func openStream(_ path: String, timeout: Duration) async throws -> HTTPClientResponse.Body {
        var freshToken = false
        while true {
            let response: HTTPClientResponse
            do {
                response = try await watchHTTP.execute(makeRequest(.GET, path, freshToken: freshToken), timeout: .init(timeout))
            } catch {
                throw KubeError(status: 0, message: "GET \(connection.server)\(path) failed: \(error)")
            }
            let status = Int(response.status.code)
            if status == 401, !freshToken, connection.tokenFile != nil {
                freshToken = true
                continue
            }
            guard (200..<300).contains(status) else {
                let data = Data((try? await response.body.collect(upTo: 1 << 20))?.readableBytesView ?? ByteBuffer().readableBytesView)
                let reply = try? JSONDecoder().decode(KubeStatus.self, from: data)
                throw KubeError(status: status, reason: reply?.reason, message: reply?.message ?? "GET \(path) answered \(status)")
            }
            return response.body
        }
    }

    /// Sends one request (``send(_:_:body:contentType:)``) and reads its reply, which must be a JSON object, as a `type`.
    private func object<T: Decodable>(
        _ type: T.Type,
        _ method: HTTPMethod,
        _ path: String,
        body: Data? = nil,
        contentType: String = "application/json"
    ) async throws -> T {
        let reply = try await send(method, path, body: body, contentType: contentType)
        guard let object = try? JSONDecoder().decode(type, from: reply.body) else {
            throw KubeError(status: reply.status, message: "\(method) \(path) answered something that is not a JSON object")
        }
        return object
    }

    /// One request with retries on 429/5xx/unreachable, and a token re-read after a 401.
    func send(
        _ method: HTTPMethod,
        _ path: String,
        body: Data? = nil,
        contentType: String = "application/json"
    ) async throws -> (status: Int, body: Data) {
        var delay: Duration = .milliseconds(200)
        var reauthenticated = false
        var attempt = 1
        while true {
            do {
                return try await sendOnce(method, path, body: body, contentType: contentType, freshToken: reauthenticated)
            } catch let error as KubeError {
                if error.status == 401, !reauthenticated, connection.tokenFile != nil {
                    reauthenticated = true
                    continue
                }
                guard error.isRetryable, attempt < Self.attempts else { throw error }
            }
            attempt += 1
            try await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
    }

    private func makeRequest(
        _ method: HTTPMethod,
        _ path: String,
        body: Data? = nil,
        contentType: String = "application/json",
        freshToken: Bool
    ) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: connection.server + path)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let token = token(refresh: freshToken) { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        return request
    }

    private func sendOnce(
        _ method: HTTPMethod,
        _ path: String,
        body: Data?,
        contentType: String,
        freshToken: Bool
    ) async throws -> (status: Int, body: Data) {
        let request = makeRequest(method, path, body: body, contentType: contentType, freshToken: freshToken)
        let response: HTTPClientResponse
        let data: Data
        do {
            response = try await http.execute(request, timeout: .seconds(60))
            data = Data((try await response.body.collect(upTo: 64 << 20)).readableBytesView)
        } catch {
            throw KubeError(status: 0, message: "\(method) \(connection.server)\(path) failed: \(error)")
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let reply = try? JSONDecoder().decode(KubeStatus.self, from: data)
            throw KubeError(status: status, reason: reply?.reason, message: reply?.message ?? "\(method) \(path) answered \(status)")
        }
        return (status, data)
    }

    /// The bearer token: fixed, or read from the token file at most a minute ago (or now, after a 401).
    private func token(refresh: Bool) -> String? {
        if let token = connection.token { return token }
        guard let file = connection.tokenFile else { return nil }
        return cachedToken.withLock { cache in
            if !refresh, let value = cache.value, let readAt = cache.readAt, ContinuousClock.now - readAt < .seconds(60) { return value }
            let value = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            cache = (value, .now)
            return value
        }
    }

    static func escape(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
    }
}
