import UnixSignals

/// Turns signals into a callback instead of process death, until the returned task is cancelled
/// (swift-service-lifecycle's `UnixSignalsSequence`, which ignores the signals' default action while trapping).
enum SignalTrap {
    static func start(_ signals: [UnixSignal], handler: @escaping @Sendable (UnixSignal) -> Void) async -> Task<Void, Never> {
        let sequence = await UnixSignalsSequence(trapping: signals)
        return Task {
            for await signal in sequence { handler(signal) }
        }
    }
}
