/// How much of the model state ZeRO shards across the ranks (Rajbhandari et al.). Each stage
/// shards what the one before it does and one thing more. Written as the number in configs
/// (`zero: {stage: 2}`) and plans; `ZeroEngine`s implement them.
public enum ZeroStage: Int, Codable, Sendable, CaseIterable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// Stage 0, plain data parallelism: every rank holds all parameters, gradients and AdamW
    /// moments; gradients are all-reduced in buckets while backward runs.
    case replicated = 0
    /// Stage 1: the AdamW moments are sharded; gradients are reduce-scattered after backward, each
    /// rank updates its shard, and the parameters are all-gathered.
    case optimizerSharded = 1
    /// Stage 2: as 1, and each rank keeps only its shard of the gradients (reduce-scattered
    /// region by region during backward).
    case gradientsSharded = 2
    /// Stage 3: as 2, and the parameters are sharded too (gathered region by region just before
    /// use, freed after).
    case parametersSharded = 3

    /// A stage by its number (0…3); a literal outside that range is a programmer mistake.
    public init(integerLiteral value: Int) {
        guard let stage = ZeroStage(rawValue: value) else { preconditionFailure("ZeRO stage \(value) is not 0, 1, 2 or 3") }
        self = stage
    }

    /// The AdamW moments are split across ranks (stages 1–3).
    public var shardsOptimizerState: Bool { self >= .optimizerSharded }
    /// Each rank keeps only its shard of the gradients (stages 2–3).
    public var shardsGradients: Bool { self >= .gradientsSharded }
    /// Each rank keeps only its shard of the parameters (stage 3).
    public var shardsParameters: Bool { self >= .parametersSharded }

    public static func < (a: ZeroStage, b: ZeroStage) -> Bool { a.rawValue < b.rawValue }

    /// "stage 2".
    public var description: String { "stage \(rawValue)" }
}
