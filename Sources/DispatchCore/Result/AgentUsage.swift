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
        self.inputTokens = Self.tokens(inputTokens)
        self.cachedInputTokens = Self.tokens(cachedInputTokens)
        self.outputTokens = Self.tokens(outputTokens)
        self.reasoningTokens = Self.tokens(reasoningTokens)
        self.costUsd = Self.cost(costUsd)
    }

    enum CodingKeys: String, CodingKey { case inputTokens, cachedInputTokens, outputTokens, reasoningTokens, costUsd }

    /// Most tokens one figure of one attempt may say: what an agent prints is the agent's, and sums and counters must
    /// not overflow (a trap would end the runner) whatever it prints.
    package static let maxTokens = 1_000_000_000_000
    /// Most US dollars one attempt may say.
    package static let maxCost = 1_000_000_000.0

    /// `value` when it is a count of tokens one attempt can have reported, else `nil` (unknown).
    package static func tokens(_ value: Int?) -> Int? { value.flatMap { (0...maxTokens).contains($0) ? $0 : nil } }

    /// `value` when it is a cost one attempt can have reported (finite, not negative), else `nil` (unknown).
    package static func cost(_ value: Double?) -> Double? { value.flatMap { $0.isFinite && (0...maxCost).contains($0) ? $0 : nil } }

    /// Decodes each figure within its bounds (a job-runner's report comes from a pod).
    package init(from decoder: any Decoder) throws {
        // Each figure leniently: one odd number must not cost a job-runner's whole report (its output and artifacts).
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func figure<T: Decodable>(_ key: CodingKeys) -> T? { (try? c.decodeIfPresent(T.self, forKey: key)) ?? nil }
        self.init(
            inputTokens: figure(.inputTokens),
            cachedInputTokens: figure(.cachedInputTokens),
            outputTokens: figure(.outputTokens),
            reasoningTokens: figure(.reasoningTokens),
            costUsd: figure(.costUsd)
        )
    }

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
        // Saturating, and past the bounds of one attempt's figures (a dispatch may well use more than one attempt may).
        func total(_ figure: (AgentUsage) -> Int?) -> Int? {
            let known = usages.compactMap(figure)
            guard !known.isEmpty else { return nil }
            return known.reduce(0) { sum, next in
                let (added, overflow) = sum.addingReportingOverflow(next)
                return overflow ? Int.max : added
            }
        }
        let costs = usages.compactMap(\.costUsd)
        var sum = AgentUsage()
        sum.inputTokens = total(\.inputTokens)
        sum.cachedInputTokens = total(\.cachedInputTokens)
        sum.outputTokens = total(\.outputTokens)
        sum.reasoningTokens = total(\.reasoningTokens)
        sum.costUsd = costs.isEmpty ? nil : costs.reduce(0, +)
        return sum.isEmpty ? nil : sum
    }
}
