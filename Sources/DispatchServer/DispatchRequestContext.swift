import Hummingbird

/// Per-request context: the 1 MiB body limit lives here.
package struct DispatchRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    /// Largest request body decoded or collected.
    package var maxUploadSize: Int { 1 << 20 }

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}
