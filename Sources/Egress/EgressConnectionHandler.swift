import DispatchCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// One connection from a run's agent: reads the request head, judges its destination by the run's policy (by name,
/// then by every address the name resolves to), connects, and then either tunnels (`CONNECT host:port`: the answer
/// `200`, then raw bytes both ways) or forwards one plain-HTTP request (`GET http://host/path`: sent on in origin
/// form with `Connection: close`, the answer relayed as it comes). A refusal is answered `403` with the reason and
/// recorded in the run's report.
final class EgressConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler, EgressPartner {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingHead
        case connecting
        case forwarding
        case done
    }

    let run: EgressRun
    let resolver: EgressResolver
    private var state = State.awaitingHead
    private var context: ChannelHandlerContext?
    private var upstream: EgressGlue?
    private var tally: EgressTally?
    private var requestEnded = false
    private var readPending = false
    private var headTimeout: Scheduled<Void>?
    /// What came after the head while the destination was judged and connected: sent on after the head. At most
    /// what one read holds — nothing more is read meanwhile.
    private var early: [HTTPServerRequestPart] = []

    init(run: EgressRun, resolver: EgressResolver) {
        self.run = run
        self.resolver = resolver
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        headTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: run.limits.headTimeout) { [weak self] in
            guard let self, self.state == .awaitingHead else { return }
            self.answer(408, "no request head within \(self.run.limits.headTimeout.nanoseconds / 1_000_000_000) s")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headTimeout?.cancel()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard state == .awaitingHead else { return }
            headTimeout?.cancel()
            state = .connecting
            handle(head)
        case .body, .end:
            let part = unwrapInboundIn(data)
            if state == .connecting {
                early.append(part)
            } else {
                send(part)
            }
        }
    }

    /// Sends a part of the request body on (plain HTTP, once connected).
    private func send(_ part: HTTPServerRequestPart) {
        guard state == .forwarding, !requestEnded, let upstream else { return }
        switch part {
        case .body(let body):
            tally?.bytesOut += Int64(body.readableBytes)
            upstream.forward(HTTPClientRequestPart.body(.byteBuffer(body)))
        case .end(let trailers):
            requestEnded = true
            upstream.forward(HTTPClientRequestPart.end(trailers))
            upstream.partnerFlush()
        case .head:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        switch state {
        case .awaitingHead:
            context.read()
        case .forwarding where !requestEnded:
            upstream?.partnerFlush()
            if upstream?.partnerIsWritable ?? false { context.read() } else { readPending = true }
        case .connecting, .forwarding, .done:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state == .forwarding { tally?.sideClosed() }
        state = .done
        upstream?.partnerClosed()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { upstream?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if state == .awaitingHead || state == .connecting {
            answer(400, "not an HTTP proxy request: \(error)")
        } else {
            context.close(promise: nil)
        }
    }

    /// Where the request goes: `CONNECT host:port`, or an absolute `http://` URI.
    private func handle(_ head: HTTPRequestHead) {
        guard let target = EgressTarget(head) else {
            answer(400, "this is a forward proxy: send CONNECT host:port or an absolute http:// URI (got \(head.method) \(head.uri.prefix(200)))")
            return
        }
        if let reason = run.policy.refusal(host: target.host, port: target.port) {
            refuse(target, reason: reason)
            return
        }
        let own = resolver.ownAddresses()
        guard let loop = context?.eventLoop else { return }
        guard run.startLookup() else {
            answer(503, "too many name lookups under way for this run (\(run.limits.lookupsPerRun)); try again")
            return
        }
        let run = self.run
        // A name server that never answers holds a lookup thread, not the agent: it is answered at the limit (the
        // lookup still counts against the run until it returns).
        let timeout = loop.assumeIsolated().scheduleTask(in: run.limits.lookupTimeout) { [weak self] in
            guard let self, self.state == .connecting, self.tally == nil else { return }
            self.answer(504, "looking up \(target.host) took longer than \(run.limits.lookupTimeout.nanoseconds / 1_000_000_000) s")
        }
        resolver.resolve(target.host, on: loop).assumeIsolated().whenSuccess { [self] addresses in
            run.endLookup()
            timeout.cancel()
            guard state == .connecting else { return }
            guard !addresses.isEmpty else {
                answer(502, "cannot resolve \(target.host)")
                return
            }
            let judged = addresses.map { ($0, run.policy.refusal(address: $0, port: target.port, own: own)) }
            let permitted = judged.filter { $0.1 == nil }.map(\.0)
            guard !permitted.isEmpty else {
                refuse(target, reason: judged.first?.1 ?? "refused")
                return
            }
            connect(target, to: permitted[...])
        }
    }

    private func refuse(_ target: EgressTarget, reason: String) {
        run.deny(host: target.host, port: target.port, reason: reason)
        answer(403, "refused by the egress policy: \(target.host):\(target.port) (\(reason))")
    }

    /// Connects to the first of `addresses` that answers.
    private func connect(_ target: EgressTarget, to addresses: ArraySlice<IPAddress>, lastError: (any Error)? = nil) {
        guard let address = addresses.first, let context else {
            answer(502, "cannot connect to \(target.host):\(target.port): \(lastError.map { "\($0)" } ?? "no address")")
            return
        }
        let tally = EgressTally(run: run, host: target.host, port: target.port)
        let glue = EgressGlue(tally: tally, towardAgent: true)
        let bound = NIOLoopBound((glue, target.tunnel), eventLoop: context.eventLoop)
        let socketAddress: SocketAddress
        do {
            socketAddress = try SocketAddress(ipAddress: address.description, port: target.port)
        } catch {
            connect(target, to: addresses.dropFirst(), lastError: error)
            return
        }
        ClientBootstrap(group: context.eventLoop)
            .channelOption(ChannelOptions.autoRead, value: false)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: EgressLimits.watermark)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelOption(ChannelOptions.recvAllocator, value: EgressLimits.reads)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: EgressLimits.readsPerWake)
            .connectTimeout(run.limits.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (glue, tunnel) = bound.value
                    if !tunnel { try channel.pipeline.syncOperations.addHandler(HTTPRequestEncoder()) }
                    try channel.pipeline.syncOperations.addHandler(glue)
                }
            }
            .connect(to: socketAddress)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard state == .connecting, self.context != nil, run.adopt(upstream: channel) else {
                        channel.close(promise: nil)
                        return
                    }
                    self.tally = tally
                    if target.tunnel { tunnel(upstream: glue) } else { forward(target, upstream: glue) }
                case .failure(let error):
                    connect(target, to: addresses.dropFirst(), lastError: error)
                }
            }
    }

    /// `CONNECT`: answers `200`, hands the connection to a glue of its own and leaves.
    private func tunnel(upstream: EgressGlue) {
        guard let context else { return }
        let agent = EgressGlue(tally: upstream.tally, towardAgent: false)
        agent.partner = upstream
        upstream.partner = agent
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")), promise: nil)
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(agent)
            state = .done
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            pipeline.removeHandler(context: context, promise: nil)
            pipeline.removeHandler(decoder, promise: nil)
        } catch {
            context.close(promise: nil)
            return
        }
        agent.start()
        upstream.start()
    }

    /// Plain HTTP: sends the head on in origin form and relays the answer.
    private func forward(_ target: EgressTarget, upstream: EgressGlue) {
        self.upstream = upstream
        upstream.partner = self
        state = .forwarding
        upstream.forward(HTTPClientRequestPart.head(target.originHead))
        tally?.bytesOut += Int64(target.originHeadBytes)
        let early = self.early
        self.early = []
        for part in early { send(part) }
        upstream.partnerFlush()
        upstream.start()
        if !requestEnded { context?.read() }
    }

    /// Answers with `status` and `text` and closes.
    private func answer(_ status: Int, _ text: String) {
        guard let context, state != .done || status == 408 else { return }
        state = .done
        let reason = HTTPResponseStatus(statusCode: status).reasonPhrase
        let body = text + "\n"
        let response =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\nX-Dispatch-Egress: refused\r\n\r\n\(body)"
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: response))).assumeIsolated().whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    // The agent's side, as the upstream glue sees it (plain HTTP).

    func partnerWrite(_ buffer: ByteBuffer) { context?.write(wrapOutboundOut(buffer), promise: nil) }

    func partnerFlush() { context?.flush() }

    var partnerIsWritable: Bool { context?.channel.isWritable ?? false }

    func partnerBecameWritable() {
        guard readPending, !requestEnded, let context else { return }
        readPending = false
        context.read()
    }

    /// The destination finished its answer (plain HTTP: it closes after one): the agent's connection ends with it.
    func partnerInputEnded() { partnerClosed() }

    /// The agent stopped sending: before its request head there is nothing to answer; after it, the answer comes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if state == .awaitingHead { context.close(promise: nil) }
    }

    func partnerClosed() {
        guard let context, context.channel.isActive else { return }
        let channel = context.channel
        // Nothing sits between this handler and the socket on the way out: an empty write completes after the rest.
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).assumeIsolated().whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

extension EgressGlue {
    /// Writes an HTTP part on (through the upstream's request encoder).
    func forward(_ part: HTTPClientRequestPart) { write(NIOAny(part)) }
}

/// Where a proxy request goes.
struct EgressTarget {
    var host: String
    var port: Int
    /// `CONNECT` (a tunnel) rather than one plain-HTTP request.
    var tunnel: Bool
    /// The request to send on (plain HTTP).
    var originHead: HTTPRequestHead

    /// Headers that belong to one hop, never sent on.
    static let hopByHop: Set<String> = [
        "connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade",
    ]

    /// The size of ``originHead`` as it is sent (request line, headers, blank line), for the byte count.
    var originHeadBytes: Int {
        let line = "\(originHead.method.rawValue) \(originHead.uri) HTTP/\(originHead.version.major).\(originHead.version.minor)\r\n".utf8.count
        return originHead.headers.reduce(line + 2) { $0 + $1.name.utf8.count + 2 + $1.value.utf8.count + 2 }
    }

    init?(_ head: HTTPRequestHead) {
        if head.method == .CONNECT {
            guard let (host, port) = EgressRule.split(head.uri.lowercased()), let port, EgressRule.isHost(EgressRule.normalized(host)) else {
                return nil
            }
            self.host = EgressRule.normalized(host)
            self.port = port
            tunnel = true
            originHead = head
            return
        }
        let uri = head.uri
        guard uri.lowercased().hasPrefix("http://") else { return nil }
        let rest = uri.dropFirst("http://".count)
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = String(rest[..<authorityEnd]).lowercased()
        if let at = authority.lastIndex(of: "@") { authority = String(authority[authority.index(after: at)...]) }
        guard !authority.isEmpty, let (host, port) = EgressRule.split(authority), EgressRule.isHost(EgressRule.normalized(host)) else {
            return nil
        }
        self.host = EgressRule.normalized(host)
        self.port = port ?? 80
        tunnel = false
        var path = String(rest[authorityEnd...])
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        var headers = HTTPHeaders()
        // Headers the agent's `Connection` names are for this hop too.
        let named = Set(head.headers[canonicalForm: "connection"].map { $0.lowercased() })
        // `Host` is the destination's, never the agent's: a different one would reach another site behind an allowed
        // address (a CDN's front end routes by it).
        for (name, value) in head.headers
        where !Self.hopByHop.contains(name.lowercased()) && !named.contains(name.lowercased()) && name.lowercased() != "host" {
            headers.add(name: name, value: value)
        }
        headers.add(name: "Host", value: authority)
        headers.add(name: "Connection", value: "close")
        originHead = HTTPRequestHead(version: head.version, method: head.method, uri: path, headers: headers)
    }
}
