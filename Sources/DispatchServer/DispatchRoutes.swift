import AgentProcess
import DispatchCore
import DispatchStore
import Dispatcher
import Execution
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The routes of CONTRACT §3.
struct DispatchRoutes: Sendable {
    let service: DispatchService
    let configuration: ServerConfiguration
    let startedAt: Date
    let callbackTokens: CallbackTokens
    var engine: DispatchEngine { service.engine }
    var proxy: ReplicaProxy { ReplicaProxy(store: service.engine.store, token: configuration.token) }

    /// Default long-poll wait when `timeoutMs` is not given.
    static let defaultAwaitMs = 30_000

    func register(on router: Router<DispatchRequestContext>) {
        router.get("healthz") { _, _ in JSONBody.response(encoding: ["ok": true]) }
        router.get("readyz") { _, _ in try await ready() }
        router.get("metrics") { _, _ in await metrics() }
        router.get("/") { _, _ in try await info() }

        // The callback authenticates itself: the admin token, or the request's own callback token.
        router.group("internal").post("agent-result") { request, _ in try await callback(request) }
        let api = router.group("internal").add(middleware: AuthMiddleware(token: configuration.token))
        api.post("agent-dispatch") { request, _ in try await dispatch(request) }
        api.get("agent-result/:requestId") { _, context in try await result(try requestId(context)) }
        api.get("agent-await/:requestId") { request, context in try await awaitResult(try requestId(context), request: request) }
        api.post("agent-cancel/:requestId") { _, context in try await cancel(try requestId(context)) }
        api.get("agent-dispatches") { request, _ in try await list(request) }
        api.get("agent-logs/:requestId") { request, context in try await logs(try requestId(context), request: request) }
        api.get("agent-patch/:requestId") { request, context in try await patch(try requestId(context), request: request) }
        ConsoleRoutes.add(to: router)
    }

    private func requestId(_ context: DispatchRequestContext) throws -> String {
        // The router matches the raw path: `wf%3A1` from a browser is the id `wf:1`. Decoded once; the validator
        // refuses what is left of any further encoding (`%` is not an id character).
        let raw = context.parameters.get("requestId") ?? ""
        let id = raw.removingPercentEncoding ?? raw
        do {
            try RequestValidator.validateRequestId(id)
        } catch {
            throw APIError.badRequest(error.description, field: "requestId")
        }
        return id
    }

    private func body(_ request: Request) async throws -> Data {
        let buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        return Data(buffer.readableBytesView)
    }

    private func dispatch(_ request: Request) async throws -> Response {
        var parsed: DispatchRequest
        do {
            parsed = try RequestValidator.validate(json: try await body(request))
            // The caller's trace, from the W3C header when the body names none (CONTRACT §11).
            if parsed.traceparent == nil, let header = request.headers[.init("traceparent")!] {
                if let problem = RequestValidator.traceparentProblem(header) {
                    throw RequestValidationError(field: "traceparent", message: "(the header) \(problem)")
                }
                parsed.traceparent = header
            }
        } catch let error as RequestValidationError {
            throw APIError.badRequest(error.description, field: error.field)
        }
        let submission: DispatchService.Submission
        do {
            submission = try await service.submit(parsed)
        } catch let refused as DispatchService.Refused {
            throw APIError(status: .serviceUnavailable, message: refused.description)
        } catch let error as RequestValidationError {
            throw APIError.badRequest(error.description, field: error.field)
        }
        let body = SubmitResponse(
            requestId: parsed.requestId,
            status: submission.status,
            duplicate: submission.duplicate,
            result: submission.duplicate ? submission.record.result : nil
        )
        return JSONBody.response(encoding: body, status: submission.duplicate ? .ok : .accepted)
    }

    private func result(_ id: String) async throws -> Response {
        guard var record = try await engine.store.record(id) else { throw APIError.notFound(id) }
        record = try await engine.resolveIfAbandoned(record)
        return try Self.resultResponse(record.result)
    }

    private func awaitResult(_ id: String, request: Request) async throws -> Response {
        let requested = request.uri.queryParameters.get("timeoutMs", as: Int.self) ?? Self.defaultAwaitMs
        let timeoutMs = min(max(0, requested), configuration.maxAwaitMs)
        guard let record = try await engine.store.record(id) else { throw APIError.notFound(id) }
        if record.status.isTerminal { return try Self.resultResponse(record.result) }
        let last = try await engine.awaitTerminal(id, timeout: .milliseconds(timeoutMs)) ?? record
        if last.status.isTerminal { return try Self.resultResponse(last.result) }
        return JSONBody.response(
            encoding: AwaitTimeoutResponse(requestId: id, currentStatus: last.status, timeoutMs: timeoutMs),
            status: .gatewayTimeout
        )
    }

    private func cancel(_ id: String) async throws -> Response {
        switch try await service.cancel(id) {
        case .cancelled(let result):
            return try Self.resultResponse(result)
        case .alreadyTerminal(let result):
            let body = ConflictResponse(requestId: id, status: result.status, error: "request is already \(result.status.rawValue)", result: result)
            return JSONBody.response(encoding: body, status: .conflict)
        case .requested(let result):
            // Asked of the replica that runs it; the result says where it stands now.
            return JSONBody.response(encoding: ResultResponse(result), status: .accepted)
        case .unknown:
            throw APIError.notFound(id)
        }
    }

    private func callback(_ request: Request) async throws -> Response {
        guard let presented = AuthMiddleware<DispatchRequestContext>.presentedToken(request) else { throw APIError.unauthorized }
        let isAdmin = TokenComparison.constantTimeEquals(presented, configuration.token)
        let data = try await body(request)
        let report: SandboxExecutionResult
        do {
            report = try SandboxExecutionResult.decodeCallback(data)
        } catch {
            // Only the admin learns why a body is unusable; anyone else cannot be told apart from a stranger.
            guard isAdmin else { throw APIError.unauthorized }
            throw APIError.badRequest(error.description, field: error.field)
        }
        guard isAdmin || callbackTokens.verify(presented, requestId: report.requestId) else { throw APIError.unauthorized }
        switch try await engine.applyCallback(report) {
        case .unknown:
            throw APIError.notFound(report.requestId)
        case .notRunByJob(let result, let why):
            let body = ConflictResponse(requestId: report.requestId, status: result.status, error: why, ignored: true)
            return JSONBody.response(encoding: body, status: .conflict)
        case .ignored(let result):
            return JSONBody.response(encoding: CallbackResponse(requestId: report.requestId, status: result.status, ignored: true))
        case .applied(let result):
            return JSONBody.response(encoding: CallbackResponse(requestId: report.requestId, status: result.status, ignored: false))
        }
    }

    private func list(_ request: Request) async throws -> Response {
        var status: DispatchStatus?
        if let raw = request.uri.queryParameters.get("status") {
            guard let parsed = DispatchStatus(rawValue: raw) else {
                throw APIError.badRequest("invalid status: must be one of queued, running, completed, failed, cancelled", field: "status")
            }
            status = parsed
        }
        let limit = min(max(1, request.uri.queryParameters.get("limit", as: Int.self) ?? 50), 1000)
        let prefix: String? = request.uri.queryParameters.get("prefix").map { String($0) }
        if let prefix, !prefix.isEmpty {
            do throws(RequestValidationError) {
                try RequestValidator.validateRequestId(prefix, field: "prefix")
            } catch {
                throw APIError.badRequest(error.description, field: "prefix")
            }
        }
        var before: Int64?
        if let cursor = request.uri.queryParameters.get("before") {
            guard let parsed = Int64(cursor), parsed > 0 else { throw APIError.badRequest("invalid before: not a cursor from next", field: "before") }
            before = parsed
        }
        // One more than asked tells whether there is a next page.
        let records = try await engine.store.list(status: status, prefix: prefix, before: before, limit: limit + 1)
        let page = records.prefix(limit)
        let next = records.count > limit ? page.last.map { String($0.sequence) } : nil
        return JSONBody.response(encoding: ListResponse(items: page.map(ListResponse.Item.init), next: next))
    }

    private func logs(_ id: String, request: Request) async throws -> Response {
        if let misdirected = ReplicaProxy.misdirected(request) { return misdirected }
        guard let found = try await engine.store.record(id) else { throw APIError.notFound(id) }
        if let peer = await proxy.peer(holding: found, for: request), let answer = await proxy.forward(request, to: peer) { return answer }
        let stream = request.uri.queryParameters.get("stream") ?? "stdout"
        guard stream == "stdout" || stream == "stderr" else { throw APIError.badRequest("stream must be stdout or stderr", field: "stream") }
        let follow = ["1", "true"].contains(request.uri.queryParameters.get("follow") ?? "")
        // `tail=N`: start N bytes before the end of the file (the console shows a tail, not a 1 GiB download).
        let tail = request.uri.queryParameters.get("tail", as: UInt64.self)
        let store = engine.store
        let notifier = engine.notifier
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: ResponseBody { writer in
                // The whole file in 1 MiB chunks (memory stays flat whatever its size); with `follow`, until the request
                // is terminal and the file is drained to its end.
                var offset: UInt64 = 0
                var path: String?
                var record = try await store.record(id)
                while let current = record {
                    let file = current.result.logs.map { stream == "stderr" ? $0.stderrPath : $0.stdoutPath }
                    if file != path {
                        path = file
                        offset = tail.flatMap { tail in file.map { max(0, Self.size($0) - min(tail, Self.size($0))) } } ?? 0
                    }
                    let chunk = file.map { Self.read($0, from: offset) } ?? Data()
                    if !chunk.isEmpty {
                        offset += UInt64(chunk.count)
                        try await writer.write(ByteBuffer(bytes: chunk))
                        continue
                    }
                    if !follow || current.status.isTerminal { break }
                    await Self.nextChange(of: file, after: offset, or: id, notifier: notifier)
                    try Task.checkCancellation()
                    record = try await store.record(id)
                }
                try await writer.finish(nil)
            }
        )
    }

    /// The full patch of a sandbox request: a local sandbox's patch file streamed in 1 MiB chunks (memory stays flat
    /// whatever its size), or the patch a Job reported inline. A path is served only when it is a regular file inside
    /// this runner's sandbox root: a Job's callback (which an agent in the pod could forge) names paths in its pod, and
    /// must not make this route read the runner's own files.
    private func patch(_ id: String, request: Request) async throws -> Response {
        if let misdirected = ReplicaProxy.misdirected(request) { return misdirected }
        guard let record = try await engine.store.record(id) else { throw APIError.notFound(id) }
        if let peer = await proxy.peer(holding: record, for: request), let answer = await proxy.forward(request, to: peer) { return answer }
        let artifacts = record.result.artifacts
        let local = record.result.sandboxBackend == .local ? artifacts?.patchPath.flatMap(localPatchFile) : nil
        guard let path = local else {
            // The patch the run reported inline (at most a few MiB; a local sandbox's after the janitor removed it).
            guard let inline = artifacts?.patch, !inline.isEmpty else {
                throw APIError(status: .notFound, message: "request \(id) has no patch", extra: ["status": record.status.rawValue])
            }
            return Response(status: .ok, headers: [.contentType: "text/x-diff; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: inline)))
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/x-diff; charset=utf-8"],
            body: ResponseBody { writer in
                var offset: UInt64 = 0
                while true {
                    let chunk = Self.read(path, from: offset)
                    if chunk.isEmpty { break }
                    offset += UInt64(chunk.count)
                    try await writer.write(ByteBuffer(bytes: chunk))
                }
                try await writer.finish(nil)
            }
        )
    }

    /// Ready while the store takes a write, the inbox takes a file with content (an empty one needs no space on a
    /// full disk) and no terminal result waits for the store.
    private func ready() async throws -> Response {
        let storeOK = await engine.store.isWritable()
        let probe = "\(engine.store.inboxDir)/.readyz-\(getpid())"
        let inboxOK = (try? AtomicFile.write(Data("ready\n".utf8), to: probe)) != nil
        unlink(probe)
        let held = engine.held.count
        let ok = storeOK && inboxOK && held == 0
        return JSONBody.response(
            encoding: ReadyResponse(ok: ok, store: storeOK, inbox: inboxOK, held: held),
            status: ok ? .ok : .serviceUnavailable
        )
    }

    private func metrics() async -> Response {
        let counts = service.counts
        // A shared queue is the store's (every replica claims from it): its depth is the store's count.
        let queued = engine.store.announcesCommits ? ((try? await engine.store.queuedCount()) ?? 0) : counts.queued
        // This engine's dispatch metrics, then the process-wide HTTP request metrics (distinct family names).
        let text =
            engine.metrics.render(running: counts.running, queued: queued, waiters: engine.notifier.waiterCount)
            + ServerMetrics.render()
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }

    private func info() async throws -> Response {
        let counts = try await engine.store.counts()
        let live = service.counts
        return JSONBody.response(
            encoding: InfoResponse(
                version: ServerInfo.version,
                gitSha: ServerInfo.gitSha,
                uptimeSeconds: Int(Date().timeIntervalSince(startedAt)),
                startedAt: ISO8601.string(startedAt),
                defaultBackend: engine.configuration.defaultBackend,
                isolation: configuration.isolation,
                egress: configuration.egress,
                limits: engine.limitsMechanism,
                agentUser: engine.agentUsers.report,
                agentUsers: engine.agentUsers.byMode,
                runsOutliveRunner: engine.runsOutliveRunner,
                store: engine.store.kind,
                maxConcurrent: service.maxConcurrent,
                running: live.running,
                // A shared queue is the store's: its depth is the store's count, not this replica's.
                queued: engine.store.announcesCommits ? counts[.queued] ?? 0 : live.queued,
                counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })
            )
        )
    }

    static func resultResponse(_ result: DispatchResult) throws -> Response {
        JSONBody.response(encoding: ResultResponse(result))
    }

    /// `path` when it is a regular file (not a symlink) inside the sandbox root, as the kernel resolves it.
    private func localPatchFile(_ path: String) -> String? {
        let root = URL(fileURLWithPath: engine.configuration.sandboxRoot).resolvingSymlinksInPath().path
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var info = stat()
        guard real.hasPrefix(root + "/"), lstat(real, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return real
    }

    /// Waits for a followed log to move on: a write to `file` (the runtime's watch on it), the request's terminal
    /// result, or a second at most (a new attempt's file) — whichever comes first.
    static func nextChange(of file: String?, after offset: UInt64, or requestId: String, notifier: ResultNotifier) async {
        let wakeup = Wakeup()
        let runtime = ProcessRuntime.shared
        let watch = file.map { runtime.watchFile($0) { wakeup.signal() } }
        defer { if let watch { runtime.cancel(watch) } }
        // Written between the last read and the watch: no wait.
        if let file, size(file) > offset { return }
        let subscription = notifier.subscribe(requestId)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await wakeup.wait(until: .now + .seconds(1)) }
            group.addTask { _ = await subscription.value(timeout: .seconds(1)) }
            await group.next()
            group.cancelAll()
        }
    }

    static func size(_ path: String) -> UInt64 {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_size) : 0
    }

    static func read(_ path: String, from offset: UInt64) -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else { return Data() }
        defer { try? handle.close() }
        try? handle.seek(toOffset: offset)
        return (try? handle.read(upToCount: 1 << 20)) ?? Data()
    }
}
