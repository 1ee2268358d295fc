import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A small in-memory Kubernetes API for tests: the Job / Pod / log / Event subset the client uses, with real
/// status shapes, bearer-token auth and fault injection. Jobs get one pod each; tests set pod state and logs.
package final class FakeKubernetesAPI: Sendable {
    struct State {
        var jobs: [String: [String: Any]] = [:]
        /// Secrets created through the API, by name.
        var secrets: [String: [String: Any]] = [:]
        var pods: [String: [String: Any]] = [:]
        var logs: [String: String] = [:]
        var events: [[String: Any]] = []
        var resourceVersion = 100
        var failNext = 0
        var requests: [String] = []
        var logFiles: [String: String] = [:]
        var runnerEnv: [String: [String: String]] = [:]
        var deadlineHit: Set<String> = []
        var stalled = false
        /// Every Job change, for watches: resourceVersion, type, object.
        var history: [(version: Int, type: String, object: [String: Any])] = []
        var closeWatchesAfter: Int?
        var expireWatches = 0
        var watches = 0
        var goneSent = 0
        var closing = false
    }

    /// Runs created Jobs as local `dispatch job-runner` processes (a kubelet emulator).
    package struct Kubelet: Sendable {
        package var dispatchBinary: String
        package var workRoot: String
        /// Values of the fake Secret, by key.
        package var secrets: [String: String]
        /// Extra environment for the runner (fake agent binaries).
        package var environment: [String: String]
        /// Blank out RESULT_CALLBACK_URL, as if the callback never arrived.
        package var dropCallback: Bool
        /// Leave the Job active after its runner exits (only the callback can then finish the dispatch).
        package var holdJobs: Bool
        /// The git credentials Secret (`DISPATCH_K8S_GIT_SECRET`) and its values.
        package var gitSecretName: String?
        package var gitSecrets: [String: String] = [:]

        package init(
            dispatchBinary: String,
            workRoot: String,
            secrets: [String: String] = [:],
            environment: [String: String] = [:],
            dropCallback: Bool = true,
            holdJobs: Bool = false
        ) {
            self.dispatchBinary = dispatchBinary
            self.workRoot = workRoot
            self.secrets = secrets
            self.environment = environment
            self.dropCallback = dropCallback
            self.holdJobs = holdJobs
        }
    }

    package let token: String
    let kubelet: Kubelet?
    private let state = Locked(State())
    private let processes = Locked([String: RunningCommand]())

    /// Whether requests must carry `Bearer <token>` (off when TLS client certificates authenticate).
    let requireToken: Bool

    package init(token: String = "kube-token", requireToken: Bool = true, kubelet: Kubelet? = nil) {
        self.token = token
        self.requireToken = requireToken
        self.kubelet = kubelet
    }

    /// Environment a runner process got, by Job name (tests check that secrets resolve and never appear inline).
    package func runnerEnvironment(_ job: String) -> [String: String]? { state.withLock { $0.runnerEnv[job] } }

    /// The next `count` requests answer 500.
    package func failNext(_ count: Int) { state.withLock { $0.failNext = count } }

    /// While set, every request hangs (an API that accepts connections but never answers).
    package func stall(_ on: Bool) { state.withLock { $0.stalled = on } }

    var isStalled: Bool { state.withLock { $0.stalled } }

    /// Requests seen, as `METHOD path?query`.
    package var requests: [String] { state.withLock { $0.requests } }

    /// Sets the pod of `job`'s phase, waiting reason, log text.
    package func setPod(ofJob job: String, phase: String? = nil, waitingReason: String? = nil, waitingMessage: String? = nil, log: String? = nil) {
        state.withLock { state in
            let name = "\(job)-pod"
            guard var pod = state.pods[name] else { return }
            var status = pod["status"] as? [String: Any] ?? [:]
            if let phase { status["phase"] = phase }
            if let waitingReason {
                let message = waitingMessage ?? "fake \(waitingReason)"
                status["containerStatuses"] = [["name": "job-runner", "state": ["waiting": ["reason": waitingReason, "message": message]]]]
                state.events.append(["type": "Warning", "reason": "Failed", "message": message, "involvedObject": ["name": name]])
            }
            pod["status"] = status
            state.pods[name] = pod
            if let log { state.logs[name] = log }
        }
    }

    /// Marks `job` finished with a terminal condition.
    package func finish(job: String, condition: String, reason: String? = nil) {
        state.withLock { state in
            guard var object = state.jobs[job] else { return }
            object["status"] = [
                "conditions": [["type": condition, "status": "True", "reason": reason ?? condition]],
                condition == "Complete" ? "succeeded" : "failed": 1,
            ]
            _ = Self.change("MODIFIED", job, object, in: &state)
        }
    }

    /// Closes every watch stream after `events` events (nil: only at timeoutSeconds).
    package func closeWatches(afterEvents events: Int?) { state.withLock { $0.closeWatchesAfter = events } }

    /// The next `count` watches find their resourceVersion expired, alternately as an `ERROR` event with a 410
    /// Status in a 200 stream (what the API does for a compacted version) and as an HTTP 410 answer.
    package func expireNextWatches(_ count: Int) { state.withLock { $0.expireWatches = count } }

    /// Watches served, and how many of them got a 410.
    package var watchCounts: (watches: Int, gone: Int) { state.withLock { ($0.watches, $0.goneSent) } }

    /// Stores a Job change with a new resourceVersion (the Job's and the collection's) for watches.
    static func change(_ type: String, _ name: String, _ object: [String: Any], in state: inout State) -> [String: Any] {
        state.resourceVersion += 1
        var object = object
        var metadata = object["metadata"] as? [String: Any] ?? [:]
        metadata["resourceVersion"] = "\(state.resourceVersion)"
        object["metadata"] = metadata
        if type == "DELETED" { state.jobs.removeValue(forKey: name) } else { state.jobs[name] = object }
        state.history.append((state.resourceVersion, type, object))
        return object
    }

    /// A Secret created through the API (its `data` still base64), by name.
    package func secret(_ name: String) -> [String: Any]? { state.withLock { $0.secrets[name] } }

    /// Whether `job` exists (deleted Jobs are gone at once, as with Background propagation).
    package func hasJob(_ job: String) -> Bool { state.withLock { $0.jobs[job] != nil } }

    /// The router; run it with `Application(router:)` on 127.0.0.1.
    package func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: FakeAuth(api: self))
        let jobs = "apis/batch/v1/namespaces/:ns/jobs"
        router.post(RouterPath(jobs)) { request, _ in try await self.create(request) }
        router.get(RouterPath(jobs)) { request, _ in self.listJobs(request) }
        router.get(RouterPath("\(jobs)/:name")) { _, context in self.getJob(context.parameters.get("name") ?? "") }
        router.delete(RouterPath("\(jobs)/:name")) { request, context in self.deleteJob(context.parameters.get("name") ?? "", request) }
        router.patch(RouterPath("\(jobs)/:name")) { request, context in try await self.patchJob(context.parameters.get("name") ?? "", request) }
        router.post("api/v1/namespaces/:ns/secrets") { request, _ in try await self.createSecret(request) }
        router.delete("api/v1/namespaces/:ns/secrets/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            return self.state.withLock { state in
                guard state.secrets.removeValue(forKey: name) != nil else { return Self.status(404, "NotFound", "secrets \"\(name)\" not found") }
                return Self.status(200, "Success", "deleted")
            }
        }
        router.get("api/v1/namespaces/:ns/pods") { request, _ in self.listPods(request) }
        router.get("api/v1/namespaces/:ns/pods/:pod/log") { request, context in self.log(context.parameters.get("pod") ?? "", request) }
        router.get("api/v1/namespaces/:ns/events") { request, _ in self.listEvents(request) }
        return router
    }

    func record(_ request: Request) -> Bool {
        state.withLock { state in
            state.requests.append("\(request.method) \(request.uri)")
            guard state.failNext > 0 else { return false }
            state.failNext -= 1
            return true
        }
    }

    private func create(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 4 << 20)
        guard var job = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let metadata = job["metadata"] as? [String: Any], let name = metadata["name"] as? String
        else { return Self.status(400, "BadRequest", "invalid Job") }
        return state.withLock { state in
            guard state.jobs[name] == nil else { return Self.status(409, "AlreadyExists", "jobs.batch \"\(name)\" already exists") }
            var metadata = metadata
            metadata["uid"] = UUID().uuidString.lowercased()
            job["metadata"] = metadata
            let suspended = (job["spec"] as? [String: Any])?["suspend"] as? Bool ?? false
            job["status"] = suspended ? ["active": 0] as [String: Any] : ["active": 1]
            job = Self.change("ADDED", name, job, in: &state)
            // A suspended Job has no pod until it is resumed.
            if !suspended { Self.createPod(of: name, job: job, in: &state) }
            return Self.json(job, status: .created)
        }.also { response in
            if response.status == .created, !self.isSuspended(name) { self.launch(name) }
        }
    }

    /// What the Job controller does when a Job may run: create its pod (or fail to, when admission rejects it).
    static func createPod(of name: String, job: [String: Any], in state: inout State) {
        if image(of: job).contains("rejected-image") {
            // Pod Security admission refuses the pod: the Job exists, no pod ever does, the Job's Events say why.
            state.events.append([
                "type": "Warning", "reason": "FailedCreate", "involvedObject": ["name": name, "kind": "Job"],
                "message": "Error creating: pods \"\(name)-x\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true",
            ])
            return
        }
        state.pods["\(name)-pod"] = [
            "metadata": ["name": "\(name)-pod", "labels": ["batch.kubernetes.io/job-name": name]], "status": ["phase": "Pending"],
        ]
    }

    /// Whether Job `name` is still suspended (its pod not made yet).
    package func isSuspended(_ name: String) -> Bool {
        state.withLock { (($0.jobs[name]?["spec"] as? [String: Any])?["suspend"] as? Bool) ?? false }
    }

    /// A JSON merge patch of `spec.suspend` (the only patch the controller sends); resuming starts the pod.
    private func patchJob(_ name: String, _ request: Request) async throws -> Response {
        guard request.headers[.contentType] == "application/merge-patch+json" else {
            return Self.status(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
        }
        let body = try await request.body.collect(upTo: 1 << 20)
        guard let patch = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let suspend = (patch["spec"] as? [String: Any])?["suspend"] as? Bool
        else { return Self.status(422, "Invalid", "unsupported patch") }
        let resumed = state.withLock { state -> Bool? in
            guard var job = state.jobs[name] else { return nil }
            var spec = job["spec"] as? [String: Any] ?? [:]
            let was = spec["suspend"] as? Bool ?? false
            spec["suspend"] = suspend
            job["spec"] = spec
            if was, !suspend {
                job["status"] = ["active": 1]
                Self.createPod(of: name, job: job, in: &state)
            }
            _ = Self.change("MODIFIED", name, job, in: &state)
            return was && !suspend
        }
        guard let resumed else { return Self.status(404, "NotFound", "jobs.batch \"\(name)\" not found") }
        if resumed { launch(name) }
        return state.withLock { Self.json($0.jobs[name] ?? [:]) }
    }

    private func createSecret(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 4 << 20)
        guard let secret = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let name = (secret["metadata"] as? [String: Any])?["name"] as? String
        else { return Self.status(400, "BadRequest", "invalid Secret") }
        return state.withLock { state in
            guard state.secrets[name] == nil else { return Self.status(409, "AlreadyExists", "secrets \"\(name)\" already exists") }
            state.secrets[name] = secret
            return Self.json(secret, status: .created)
        }
    }

    /// The decoded value of `key` in Secret `name`: one created through the API, else the kubelet's shared values.
    func secretValue(_ name: String?, key: String, kubelet: Kubelet) -> String? {
        if let name, let secret = state.withLock({ $0.secrets[name] }) {
            guard let encoded = (secret["data"] as? [String: String])?[key], let data = Data(base64Encoded: encoded) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        if let name, name == kubelet.gitSecretName { return kubelet.gitSecrets[key] }
        return kubelet.secrets[key]
    }

    /// The kubelet emulator: start `dispatch job-runner` with the Job's env, its output as the pod log.
    private func launch(_ name: String) {
        guard let kubelet else { return }
        let job = state.withLock { $0.jobs[name] } ?? [:]
        let spec = job["spec"] as? [String: Any] ?? [:]
        let podSpec = (spec["template"] as? [String: Any])?["spec"] as? [String: Any] ?? [:]
        let container = (podSpec["containers"] as? [[String: Any]])?.first ?? [:]
        if (container["image"] as? String ?? "").contains("rejected-image") { return }
        if (container["image"] as? String ?? "").contains("bad-image") {
            setPod(ofJob: name, waitingReason: "ImagePullBackOff")
            return
        }
        // A pod that stays Pending forever (e.g. waiting for capacity without an Unschedulable verdict yet).
        if (container["image"] as? String ?? "").contains("pending-image") { return }
        let namespace = (job["metadata"] as? [String: Any])?["namespace"] as? String ?? "default"
        var env = environment(of: container, pod: "\(name)-pod", namespace: namespace, kubelet: kubelet)
        mountSecretVolumes(podSpec["volumes"] as? [[String: Any]] ?? [], of: container, pod: "\(name)-pod", env: &env, kubelet: kubelet)
        env.merge(kubelet.environment) { $1 }
        if kubelet.dropCallback { env["RESULT_CALLBACK_URL"] = "" }
        guard start(name, env: env, kubelet: kubelet) else { return }
        setPod(ofJob: name, phase: "Running")
        if let deadline = spec["activeDeadlineSeconds"] as? Int {
            Task { [weak self] in
                try? await Task.sleep(for: .seconds(deadline))
                guard let self, let running = self.processes.withLock({ $0[name] }), running.isRunning else { return }
                self.state.withLock { _ = $0.deadlineHit.insert(name) }
                running.terminate()
            }
        }
    }

    /// The container's env: literal values, Secret keys, and the namespace for a field ref.
    private func environment(of container: [String: Any], pod: String, namespace: String, kubelet: Kubelet) -> [String: String] {
        var env: [String: String] = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOSTNAME": pod]
        for entry in container["env"] as? [[String: Any]] ?? [] {
            guard let key = entry["name"] as? String else { continue }
            if let value = entry["value"] as? String {
                env[key] = value
            } else if let ref = (entry["valueFrom"] as? [String: Any])?["secretKeyRef"] as? [String: Any], let secretKey = ref["key"] as? String {
                if let value = secretValue(ref["name"] as? String, key: secretKey, kubelet: kubelet) { env[key] = value }
            } else if (entry["valueFrom"] as? [String: Any])?["fieldRef"] != nil {
                env[key] = namespace
            }
        }
        return env
    }

    /// Secret volumes become files in a per-pod directory; env values naming a mount path are pointed there.
    private func mountSecretVolumes(
        _ volumes: [[String: Any]],
        of container: [String: Any],
        pod: String,
        env: inout [String: String],
        kubelet: Kubelet
    ) {
        for mount in container["volumeMounts"] as? [[String: Any]] ?? [] {
            guard let volumeName = mount["name"] as? String, let mountPath = mount["mountPath"] as? String,
                let volume = volumes.first(where: { $0["name"] as? String == volumeName }), let secret = volume["secret"] as? [String: Any]
            else { continue }
            let directory = "\(kubelet.workRoot)/\(pod)-volumes/\(volumeName)"
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let secretName = secret["secretName"] as? String
            let keys =
                (secret["items"] as? [[String: Any]])?.compactMap { $0["key"] as? String }
                ?? (secretName == kubelet.gitSecretName ? Array(kubelet.gitSecrets.keys) : [])
            for key in keys {
                guard let value = secretValue(secretName, key: key, kubelet: kubelet) else { continue }
                FileManager.default.createFile(atPath: "\(directory)/\(key)", contents: Data(value.utf8), attributes: [.posixPermissions: 0o400])
            }
            for (variable, value) in env where value == mountPath || value.hasPrefix(mountPath + "/") {
                env[variable] = directory + value.dropFirst(mountPath.count)
            }
        }
    }

    /// Starts the job-runner of Job `name`, both streams into the pod log; whether it started.
    private func start(_ name: String, env: [String: String], kubelet: Kubelet) -> Bool {
        let pod = "\(name)-pod"
        let logFile = "\(kubelet.workRoot)/\(pod).log"
        try? FileManager.default.createDirectory(atPath: kubelet.workRoot, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        state.withLock {
            $0.logFiles[pod] = logFile
            $0.runnerEnv[name] = env
        }
        // One file for both streams: the pod log interleaves them, as the container runtime does.
        guard
            let process = try? CommandRunner.start(
                kubelet.dispatchBinary,
                ["job-runner", "--workspace", "\(kubelet.workRoot)/\(name)"],
                environment: env,
                inheritEnvironment: false,
                outputPath: logFile
            )
        else { return false }
        processes.withLock { $0[name] = process }
        let reaper = Thread { [weak self] in
            let status = process.wait().exitCode
            self?.exited(name, status: status)
        }
        reaper.start()
        return true
    }

    private func exited(_ name: String, status: Int32) {
        processes.withLock { _ = $0.removeValue(forKey: name) }
        let deadline = state.withLock { $0.deadlineHit.contains(name) }
        setPod(ofJob: name, phase: status == 0 ? "Succeeded" : "Failed")
        if kubelet?.holdJobs == true { return }
        finish(
            job: name,
            condition: status == 0 ? "Complete" : "Failed",
            reason: deadline ? "DeadlineExceeded" : (status == 0 ? nil : "PodFailurePolicy")
        )
    }

    /// The first container's image of a Job object.
    static func image(of job: [String: Any]) -> String {
        let template = (job["spec"] as? [String: Any])?["template"] as? [String: Any]
        let containers = (template?["spec"] as? [String: Any])?["containers"] as? [[String: Any]]
        return containers?.first?["image"] as? String ?? ""
    }

    /// Sends SIGTERM to the runner of `job`, as the kubelet does when the pod is evicted or deleted.
    package func terminatePod(ofJob job: String) {
        if let process = processes.withLock({ $0[job] }), process.isRunning { process.terminate() }
    }

    /// The pod log of `job` as it stands (stdout and stderr, as `kubectl logs` shows them).
    package func podLog(ofJob job: String) -> String {
        state.withLock { state in
            let pod = "\(job)-pod"
            return state.logs[pod] ?? state.logFiles[pod].flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        }
    }

    /// Stops every runner process (test cleanup).
    package func stopAll() {
        state.withLock { $0.closing = true }
        for process in processes.withLock({ Array($0.values) }) where process.isRunning { process.terminate() }
    }

    private func listJobs(_ request: Request) -> Response {
        let selector = request.uri.queryParameters.get("labelSelector") ?? ""
        if let watch = request.uri.queryParameters.get("watch"), watch == "1" || watch == "true" { return watchJobs(request, selector: selector) }
        return state.withLock { state in
            let items = state.jobs.values.filter { Self.matches($0, selector) }
            return Self.json(["kind": "JobList", "items": items, "metadata": ["resourceVersion": "\(state.resourceVersion)"]])
        }
    }

    /// A watch: newline-delimited events after `resourceVersion` until `timeoutSeconds`, a configured early close,
    /// or test shutdown.
    private func watchJobs(_ request: Request, selector: String) -> Response {
        let timeout = request.uri.queryParameters.get("timeoutSeconds", as: Int.self) ?? 60
        let (start, expiry) = state.withLock { state -> (Int, Int) in
            state.watches += 1
            let version = request.uri.queryParameters.get("resourceVersion", as: Int.self) ?? state.resourceVersion
            guard state.expireWatches > 0 else { return (version, 0) }
            state.expireWatches -= 1
            state.goneSent += 1
            return (version, state.expireWatches % 2 == 1 ? 1 : 2)
        }
        let gone = "too old resource version: \(start) (\(start + 1))"
        if expiry == 2 { return Self.status(410, "Expired", gone) }
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody { writer in
                func send(_ event: [String: Any]) async throws {
                    var data = try JSONSerialization.data(withJSONObject: event)
                    data.append(UInt8(ascii: "\n"))
                    try await writer.write(ByteBuffer(bytes: data))
                }
                if expiry == 1 {
                    try await send([
                        "type": "ERROR",
                        "object": [
                            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
                            "message": gone, "code": 410,
                        ],
                    ])
                    try await writer.finish(nil)
                    return
                }
                var cursor = start
                var sent = 0
                let end = ContinuousClock.now + .seconds(timeout)
                while ContinuousClock.now < end {
                    let (events, limit, closing) = self.state.withLock { state in
                        (state.history.filter { $0.version > cursor && Self.matches($0.object, selector) }, state.closeWatchesAfter, state.closing)
                    }
                    if closing { break }
                    var stop = false
                    for event in events {
                        try await send(["type": event.type, "object": event.object])
                        cursor = event.version
                        sent += 1
                        if let limit, sent >= limit {
                            stop = true
                            break
                        }
                    }
                    if stop { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                try await writer.finish(nil)
            }
        )
    }

    private func getJob(_ name: String) -> Response {
        state.withLock { state in
            guard let job = state.jobs[name] else { return Self.status(404, "NotFound", "jobs.batch \"\(name)\" not found") }
            return Self.json(job)
        }
    }

    private func deleteJob(_ name: String, _ request: Request) -> Response {
        let background = request.uri.queryParameters.get("propagationPolicy") == "Background"
        return state.withLock { state in
            guard let job = state.jobs[name] else { return Self.status(404, "NotFound", "jobs.batch \"\(name)\" not found") }
            _ = Self.change("DELETED", name, job, in: &state)
            // The garbage collector removes what the Job owns.
            let uid = (job["metadata"] as? [String: Any])?["uid"] as? String
            state.secrets = state.secrets.filter { _, secret in
                let owners = (secret["metadata"] as? [String: Any])?["ownerReferences"] as? [[String: Any]] ?? []
                return !owners.contains { $0["uid"] as? String == uid }
            }
            // Without Background propagation the API leaves the pods running (orphaned), as the real one does.
            if background { state.pods.removeValue(forKey: "\(name)-pod") }
            return Self.status(200, "Success", "deleted")
        }.also { response in
            if response.status == .ok, background, let process = self.processes.withLock({ $0[name] }), process.isRunning { process.terminate() }
        }
    }

    private func listPods(_ request: Request) -> Response {
        let selector = request.uri.queryParameters.get("labelSelector") ?? ""
        return state.withLock { state in
            Self.json(["kind": "PodList", "items": state.pods.values.filter { Self.matches($0, selector) }])
        }
    }

    private func log(_ pod: String, _ request: Request) -> Response {
        if let follow = request.uri.queryParameters.get("follow"), follow == "true" || follow == "1" { return followLog(pod) }
        return state.withLock { state in
            guard state.pods[pod] != nil else { return Self.status(404, "NotFound", "pods \"\(pod)\" not found") }
            var text = state.logs[pod] ?? state.logFiles[pod].flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            if let tail = request.uri.queryParameters.get("tailLines", as: Int.self) {
                text = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(tail + 1).joined(separator: "\n")
            }
            if let limit = request.uri.queryParameters.get("limitBytes", as: Int.self) { text = String(text.utf8.prefix(limit)) ?? text }
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }

    /// `follow=true`: the log from its beginning, then what the runner writes, until it exits (or the pod goes).
    private func followLog(_ pod: String) -> Response {
        let job = String(pod.dropLast("-pod".count))
        guard
            let source = state.withLock({ state -> (file: String?, text: String?)? in
                guard state.pods[pod] != nil else { return nil }
                return (state.logFiles[pod], state.logs[pod])
            })
        else { return Self.status(404, "NotFound", "pods \"\(pod)\" not found") }
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain"],
            body: ResponseBody { writer in
                if let text = source.text ?? (source.file == nil ? "" : nil) {
                    try await writer.write(ByteBuffer(string: text))
                    try await writer.finish(nil)
                    return
                }
                let handle = FileHandle(forReadingAtPath: source.file!)
                defer { try? handle?.close() }
                while true {
                    let running = self.processes.withLock { $0[job]?.isRunning ?? false }
                    let gone = self.state.withLock { $0.pods[pod] == nil || $0.closing }
                    if let data = try handle?.readToEnd(), !data.isEmpty { try await writer.write(ByteBuffer(bytes: data)) }
                    if !running || gone { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                try await writer.finish(nil)
            }
        )
    }

    private func listEvents(_ request: Request) -> Response {
        let field = (request.uri.queryParameters.get("fieldSelector") ?? "").replacingOccurrences(of: "involvedObject.name=", with: "")
        return state.withLock { state in
            Self.json(["kind": "EventList", "items": state.events.filter { (($0["involvedObject"] as? [String: Any])?["name"] as? String) == field }])
        }
    }

    static func matches(_ object: [String: Any], _ selector: String) -> Bool {
        let labels = (object["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
        return selector.split(separator: ",").allSatisfy { term in
            let parts = term.split(separator: "=", maxSplits: 1).map(String.init)
            return parts.count == 2 && labels[parts[0]] == parts[1]
        }
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func status(_ code: Int, _ reason: String, _ message: String) -> Response {
        json(
            [
                "kind": "Status", "apiVersion": "v1", "status": code < 300 ? "Success" : "Failure", "reason": reason, "message": message,
                "code": code,
            ],
            status: HTTPResponse.Status(code: code)
        )
    }
}

/// Bearer-token check plus fault injection.
struct FakeAuth: RouterMiddleware {
    let api: FakeKubernetesAPI

    func handle(
        _ request: Request,
        context: BasicRequestContext,
        next: (Request, BasicRequestContext) async throws -> Response
    ) async throws -> Response {
        if api.record(request) { return FakeKubernetesAPI.status(500, "InternalError", "injected fault") }
        while api.isStalled { try await Task.sleep(for: .milliseconds(50)) }
        guard !api.requireToken || request.headers[.authorization] == "Bearer \(api.token)" else {
            return FakeKubernetesAPI.status(401, "Unauthorized", "Unauthorized")
        }
        return try await next(request, context)
    }
}

/// Lock-guarded storage for values that are not Sendable (JSON objects); every access holds the lock,
/// which is why the `@unchecked Sendable` is safe.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

extension Response {
    /// Runs `body` with the response, then returns it (side effects after the lock is released).
    func also(_ body: (Response) -> Void) -> Response {
        body(self)
        return self
    }
}
