/// What an attempt cost, as its CLI reported it (CONTRACT §11), and, summed, a dispatch: tokens and US dollars. Each
/// figure is `nil` (encoded `null`) when the CLI said nothing of it. Input counts every input token, cached ones
/// included (`cachedInputTokens` says how many of them were); reasoning tokens are part of the output.
package struct AgentUsage: Codable, Sendable, Equatable {
    package var inputTokens: Int?
    package var cachedInputTokens: Int?
    package var outputTokens: Int?
    package var reasoningTokens: Int?
    package var costUsd: Double?

    package init(
        inputTokens: Int? = nil,
        cachedInputTokens: Int? = nil,
        outputTokens: Int? = nil,
        reasoningTokens: Int? = nil,
        costUsd: Double? = nil
    ) {
        self.inputTokens = inputTokens
        self.cachedInputTokens = cachedInputTokens
        self.outputTokens = outputTokens
        self.reasoningTokens = reasoningTokens
        self.costUsd = costUsd
    }

    enum CodingKeys: String, CodingKey { case inputTokens, cachedInputTokens, outputTokens, reasoningTokens, costUsd }

    /// Every figure, `null` when unknown.
    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(inputTokens, forKey: .inputTokens)
        try c.encode(cachedInputTokens, forKey: .cachedInputTokens)
        try c.encode(outputTokens, forKey: .outputTokens)
        try c.encode(reasoningTokens, forKey: .reasoningTokens)
        try c.encode(costUsd, forKey: .costUsd)
    }

    /// Whether the CLI said nothing at all.
    package var isEmpty: Bool { self == AgentUsage() }

    /// The figures by the `kind` label of `dispatch_tokens_total`.
    package var tokensByKind: [(kind: String, count: Int)] {
        [("input", inputTokens), ("cached_input", cachedInputTokens), ("output", outputTokens), ("reasoning", reasoningTokens)]
            .compactMap { entry in entry.1.map { (entry.0, $0) } }
    }

    /// The sum of `usages`, figure by figure: a figure no usage knows stays `nil`; `nil` when none knows anything.
    package static func sum(_ usages: [AgentUsage]) -> AgentUsage? {
        func total<T: AdditiveArithmetic>(_ figure: (AgentUsage) -> T?) -> T? {
            let known = usages.compactMap(figure)
            return known.isEmpty ? nil : known.reduce(.zero, +)
        }
        let sum = AgentUsage(
            inputTokens: total(\.inputTokens),
            cachedInputTokens: total(\.cachedInputTokens),
            outputTokens: total(\.outputTokens),
            reasoningTokens: total(\.reasoningTokens),
            costUsd: total(\.costUsd)
        )
        return sum.isEmpty ? nil : sum
    }
}
