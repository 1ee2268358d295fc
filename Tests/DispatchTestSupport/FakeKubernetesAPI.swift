import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A small in-memory Kubernetes API for tests: the Job / Pod / log / Event subset the client uses, with real
/// status shapes, bearer-token auth and fault injection. Jobs get one pod each; tests set pod state and logs.
public final class FakeKubernetesAPI: Sendable {
    struct State {
        var jobs: [String: [String: Any]] = [:]
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
    }

    /// Runs created Jobs as local `dispatch job-runner` processes (a kubelet emulator).
    public struct Kubelet: Sendable {
        public var dispatchBinary: String
        public var workRoot: String
        /// Values of the fake Secret, by key.
        public var secrets: [String: String]
        /// Extra environment for the runner (fake agent binaries).
        public var environment: [String: String]
        /// Blank out RESULT_CALLBACK_URL, as if the callback never arrived.
        public var dropCallback: Bool

        public init(dispatchBinary: String, workRoot: String, secrets: [String: String] = [:], environment: [String: String] = [:], dropCallback: Bool = true) {
            self.dispatchBinary = dispatchBinary
            self.workRoot = workRoot
            self.secrets = secrets
            self.environment = environment
            self.dropCallback = dropCallback
        }
    }

    public let token: String
    let kubelet: Kubelet?
    private let state = Locked(State())
    private let processes = Locked([String: Process]())

    public init(token: String = "kube-token", kubelet: Kubelet? = nil) {
        self.token = token
        self.kubelet = kubelet
    }

    /// Environment a runner process got, by Job name (tests check that secrets resolve and never appear inline).
    public func runnerEnvironment(_ job: String) -> [String: String]? { state.withLock { $0.runnerEnv[job] } }

    /// The next `count` requests answer 500.
    public func failNext(_ count: Int) { state.withLock { $0.failNext = count } }

    /// While set, every request hangs (an API that accepts connections but never answers).
    public func stall(_ on: Bool) { state.withLock { $0.stalled = on } }

    var isStalled: Bool { state.withLock { $0.stalled } }

    /// Requests seen, as `METHOD path?query`.
    public var requests: [String] { state.withLock { $0.requests } }

    /// Sets the pod of `job`'s phase, waiting reason, log text.
    public func setPod(ofJob job: String, phase: String? = nil, waitingReason: String? = nil, log: String? = nil) {
        state.withLock { state in
            let name = "\(job)-pod"
            guard var pod = state.pods[name] else { return }
            var status = pod["status"] as? [String: Any] ?? [:]
            if let phase { status["phase"] = phase }
            if let waitingReason {
                status["containerStatuses"] = [["name": "job-runner", "state": ["waiting": ["reason": waitingReason, "message": "fake \(waitingReason)"]]]]
                state.events.append(["type": "Warning", "reason": "Failed", "message": "fake \(waitingReason)", "involvedObject": ["name": name]])
            }
            pod["status"] = status
            state.pods[name] = pod
            if let log { state.logs[name] = log }
        }
    }

    /// Marks `job` finished with a terminal condition.
    public func finish(job: String, condition: String, reason: String? = nil) {
        state.withLock { state in
            guard var object = state.jobs[job] else { return }
            state.resourceVersion += 1
            var metadata = object["metadata"] as? [String: Any] ?? [:]
            metadata["resourceVersion"] = "\(state.resourceVersion)"
            object["metadata"] = metadata
            object["status"] = ["conditions": [["type": condition, "status": "True", "reason": reason ?? condition]],
                                condition == "Complete" ? "succeeded" : "failed": 1]
            state.jobs[job] = object
        }
    }

    /// Whether `job` exists (deleted Jobs are gone at once, as with Background propagation).
    public func hasJob(_ job: String) -> Bool { state.withLock { $0.jobs[job] != nil } }

    /// The router; run it with `Application(router:)` on 127.0.0.1.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: FakeAuth(api: self))
        let jobs = "apis/batch/v1/namespaces/:ns/jobs"
        router.post(RouterPath(jobs)) { request, _ in try await self.create(request) }
        router.get(RouterPath(jobs)) { request, _ in self.listJobs(request) }
        router.get(RouterPath("\(jobs)/:name")) { _, context in self.getJob(context.parameters.get("name") ?? "") }
        router.delete(RouterPath("\(jobs)/:name")) { request, context in self.deleteJob(context.parameters.get("name") ?? "", request) }
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
            var metadata = job["metadata"] as? [String: Any], let name = metadata["name"] as? String
        else { return Self.status(400, "BadRequest", "invalid Job") }
        return state.withLock { state in
            guard state.jobs[name] == nil else { return Self.status(409, "AlreadyExists", "jobs.batch \"\(name)\" already exists") }
            state.resourceVersion += 1
            metadata["resourceVersion"] = "\(state.resourceVersion)"
            job["metadata"] = metadata
            job["status"] = ["active": 1]
            state.jobs[name] = job
            state.pods["\(name)-pod"] = [
                "metadata": ["name": "\(name)-pod", "labels": ["batch.kubernetes.io/job-name": name]], "status": ["phase": "Pending"],
            ]
            return Self.json(job, status: .created)
        }.also { response in
            if response.status == .created { self.launch(name) }
        }
    }

    /// The kubelet emulator: start `dispatch job-runner` with the Job's env, its output as the pod log.
    private func launch(_ name: String) {
        guard let kubelet else { return }
        let job = state.withLock { $0.jobs[name] } ?? [:]
        let spec = job["spec"] as? [String: Any] ?? [:]
        let podSpec = (spec["template"] as? [String: Any])?["spec"] as? [String: Any] ?? [:]
        let container = (podSpec["containers"] as? [[String: Any]])?.first ?? [:]
        if (container["image"] as? String ?? "").contains("bad-image") {
            setPod(ofJob: name, waitingReason: "ImagePullBackOff")
            return
        }
        // A pod that stays Pending forever (e.g. waiting for capacity without an Unschedulable verdict yet).
        if (container["image"] as? String ?? "").contains("pending-image") { return }
        let namespace = (job["metadata"] as? [String: Any])?["namespace"] as? String ?? "default"
        var env: [String: String] = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOSTNAME": "\(name)-pod"]
        for entry in container["env"] as? [[String: Any]] ?? [] {
            guard let key = entry["name"] as? String else { continue }
            if let value = entry["value"] as? String {
                env[key] = value
            } else if let ref = (entry["valueFrom"] as? [String: Any])?["secretKeyRef"] as? [String: Any], let secretKey = ref["key"] as? String {
                if let value = kubelet.secrets[secretKey] { env[key] = value }
            } else if (entry["valueFrom"] as? [String: Any])?["fieldRef"] != nil {
                env[key] = namespace
            }
        }
        env.merge(kubelet.environment) { $1 }
        if kubelet.dropCallback { env["RESULT_CALLBACK_URL"] = "" }
        let pod = "\(name)-pod"
        let logFile = "\(kubelet.workRoot)/\(pod).log"
        try? FileManager.default.createDirectory(atPath: kubelet.workRoot, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: logFile, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kubelet.dispatchBinary)
        process.arguments = ["job-runner", "--workspace", "\(kubelet.workRoot)/\(name)"]
        process.environment = env
        process.standardOutput = FileHandle(forWritingAtPath: logFile)
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [weak self] finished in self?.exited(name, status: finished.terminationStatus) }
        state.withLock {
            $0.logFiles[pod] = logFile
            $0.runnerEnv[name] = env
        }
        do {
            try process.run()
        } catch {
            return
        }
        processes.withLock { $0[name] = process }
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

    private func exited(_ name: String, status: Int32) {
        processes.withLock { _ = $0.removeValue(forKey: name) }
        let deadline = state.withLock { $0.deadlineHit.contains(name) }
        setPod(ofJob: name, phase: status == 0 ? "Succeeded" : "Failed")
        finish(job: name, condition: status == 0 ? "Complete" : "Failed", reason: deadline ? "DeadlineExceeded" : (status == 0 ? nil : "PodFailurePolicy"))
    }

    /// Stops every runner process (test cleanup).
    public func stopAll() {
        for process in processes.withLock({ Array($0.values) }) where process.isRunning { process.terminate() }
    }

    private func listJobs(_ request: Request) -> Response {
        let selector = request.uri.queryParameters.get("labelSelector") ?? ""
        return state.withLock { state in
            let items = state.jobs.values.filter { Self.matches($0, selector) }
            return Self.json(["kind": "JobList", "items": items, "metadata": ["resourceVersion": "\(state.resourceVersion)"]])
        }
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
            guard state.jobs.removeValue(forKey: name) != nil else { return Self.status(404, "NotFound", "jobs.batch \"\(name)\" not found") }
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
        state.withLock { state in
            guard state.pods[pod] != nil else { return Self.status(404, "NotFound", "pods \"\(pod)\" not found") }
            var text = state.logs[pod] ?? state.logFiles[pod].flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            if let tail = request.uri.queryParameters.get("tailLines", as: Int.self) {
                text = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(tail + 1).joined(separator: "\n")
            }
            if let limit = request.uri.queryParameters.get("limitBytes", as: Int.self) { text = String(text.utf8.prefix(limit)) ?? text }
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
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
        json(["kind": "Status", "apiVersion": "v1", "status": code < 300 ? "Success" : "Failure", "reason": reason, "message": message,
              "code": code], status: HTTPResponse.Status(code: code))
    }
}

/// Bearer-token check plus fault injection.
struct FakeAuth: RouterMiddleware {
    let api: FakeKubernetesAPI

    func handle(_ request: Request, context: BasicRequestContext, next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
        if api.record(request) { return FakeKubernetesAPI.status(500, "InternalError", "injected fault") }
        while api.isStalled { try await Task.sleep(for: .milliseconds(50)) }
        guard request.headers[.authorization] == "Bearer \(api.token)" else { return FakeKubernetesAPI.status(401, "Unauthorized", "Unauthorized") }
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
