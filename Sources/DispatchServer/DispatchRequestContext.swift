import Hummingbird

/// Per-request context: the 1 MiB body limit lives here.
public struct DispatchRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Largest request body decoded or collected.
    public var maxUploadSize: Int { 1 << 20 }

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}
