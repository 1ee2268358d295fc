import NIOCore

/// One side of a relayed connection, as the other side sees it: it takes bytes, says whether it can take more, and
/// is told when the other side has ended. Both sides live on the same event loop.
protocol EgressPartner: AnyObject {
    func partnerWrite(_ buffer: ByteBuffer)
    func partnerFlush()
    var partnerIsWritable: Bool { get }
    func partnerBecameWritable()
    func partnerClosed()
    /// The other side will send no more (it half-closed): what it sent is written out, then this side is told so.
    func partnerInputEnded()
}

/// What a relayed connection carried, counted by both sides; reported to the run once both have closed.
final class EgressTally {
    let run: EgressRun
    let host: String
    let port: Int
    var bytesOut: Int64 = 0
    var bytesIn: Int64 = 0
    private var sidesOpen = 2

    init(run: EgressRun, host: String, port: Int) {
        self.run = run
        self.host = host
        self.port = port
    }

    /// One side closed; the second to close reports the connection.
    func sideClosed() {
        sidesOpen -= 1
        if sidesOpen == 0 { run.account(host: host, port: port, bytesOut: bytesOut, bytesIn: bytesIn) }
    }
}

/// Relays raw bytes from its channel to its partner, reading only while the partner can take what is read (reads
/// are driven by hand: the channel's `autoRead` is off), so a connection holds at most a read and a write buffer
/// whatever flows through it.
final class EgressGlue: ChannelDuplexHandler, RemovableChannelHandler, EgressPartner {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    weak var partner: (any EgressPartner)?
    /// Kept alive by the pipeline; counts bytes read on this side as `inbound` (true: toward the agent).
    let tally: EgressTally
    let towardAgent: Bool
    private(set) var context: ChannelHandlerContext?
    private var readPending = false
    private var closed = false
    /// The last write's completion: the writes before it completed first. What a side still owes the other is
    /// written out before it closes (never an extra write: an HTTP encoder may sit in front of this handler).
    private var lastWrite: EventLoopFuture<Void>?

    init(tally: EgressTally, towardAgent: Bool) {
        self.tally = tally
        self.towardAgent = towardAgent
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Starts reading (once both sides are paired).
    func start() { readIfPossible() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        if towardAgent { tally.bytesIn += Int64(buffer.readableBytes) } else { tally.bytesOut += Int64(buffer.readableBytes) }
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
        readIfPossible()
    }

    /// With half-closure allowed, a side that stops sending is an event, not the end: the other side hears of it once
    /// what came before is written, and can still answer.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        partner?.partnerFlush()
        partner?.partnerInputEnded()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !closed {
            closed = true
            tally.sideClosed()
        }
        partner?.partnerClosed()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func readIfPossible() {
        guard let context else { return }
        if partner?.partnerIsWritable ?? false {
            context.read()
        } else {
            readPending = true
        }
    }

    func partnerWrite(_ buffer: ByteBuffer) { write(wrapOutboundOut(buffer)) }

    /// Writes `data` out from this handler, remembering its completion.
    func write(_ data: NIOAny) {
        guard let context else { return }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(data, promise: promise)
        lastWrite = promise.futureResult
    }

    func partnerFlush() { context?.flush() }

    var partnerIsWritable: Bool { context?.channel.isWritable ?? false }

    func partnerBecameWritable() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    /// The other side stopped sending: once what it sent is written, this side's sending half is shut (NIO closes the
    /// channel whole when its input had ended too).
    func partnerInputEnded() {
        guard let context, context.channel.isActive else { return }
        let channel = context.channel
        context.flush()
        guard let lastWrite else {
            channel.close(mode: .output, promise: nil)
            return
        }
        lastWrite.whenComplete { _ in channel.close(mode: .output, promise: nil) }
    }

    /// The other side ended: what it sent is written out, then this side closes.
    func partnerClosed() {
        guard let context, context.channel.isActive else { return }
        let channel = context.channel
        context.flush()
        guard let lastWrite else {
            channel.close(promise: nil)
            return
        }
        lastWrite.whenComplete { _ in channel.close(promise: nil) }
    }
}
