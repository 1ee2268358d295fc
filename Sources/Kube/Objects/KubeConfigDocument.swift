/// One kubeconfig file, as far as ``KubeConfig`` reads it: its named clusters, users and contexts and its
/// current context. Leniently: a list that is missing, not a list, or holds anything but mappings is empty; a
/// field of another type is ignored. Decode it from a node made by `Yams.compose` (see ``YAMLLoadedScalar``).
struct KubeConfigDocument: Sendable, Decodable {
    /// One item of `clusters`, `users` or `contexts`: its `name` and its body (under `cluster`, `user` or `context`).
    struct Item: Sendable, Decodable {
        /// `name` (when it is a string).
        var name: String?
        /// The `cluster`, `user` and `context` bodies (when they are mappings).
        var cluster: KubeConfigMapping?, user: KubeConfigMapping?, context: KubeConfigMapping?

        /// Reads an item (a mapping; anything else throws).
        init(from decoder: any Decoder) throws {
            let item = try decoder.container(keyedBy: KubeCodingKey.self)
            name = item.lenient("name", as: YAMLLoadedScalar.self)?.string
            cluster = item.lenient("cluster", as: KubeConfigMapping.self)
            user = item.lenient("user", as: KubeConfigMapping.self)
            context = item.lenient("context", as: KubeConfigMapping.self)
        }
    }

    /// `clusters`, `users` and `contexts`, in file order.
    var clusters: [Item], users: [Item], contexts: [Item]
    /// `current-context` (when it is a string).
    var currentContext: String?

    /// Reads a kubeconfig (a mapping; anything else throws).
    init(from decoder: any Decoder) throws {
        let root = try decoder.container(keyedBy: KubeCodingKey.self)
        clusters = root.lenient("clusters", as: [Item].self) ?? []
        users = root.lenient("users", as: [Item].self) ?? []
        contexts = root.lenient("contexts", as: [Item].self) ?? []
        currentContext = root.lenient("current-context", as: YAMLLoadedScalar.self)?.string
    }
}
