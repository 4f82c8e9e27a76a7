/// The `zero:` section: how optimizer state, gradients and parameters are sharded across ranks.
public struct ZeroConfig: Codable, Sendable, Equatable {
    /// 0: every rank holds everything (data parallel; gradients all-reduced in buckets during
    /// backward). 1 and 2: AdamW state sharded — gradients are reduce-scattered after backward, each
    /// rank updates its shard, parameters are all-gathered. (Stage 2's gradient-memory release is
    /// not implemented yet, so today 1 and 2 run the same schedule.)
    public var stage = 0

    public init() {}

    enum CodingKeys: String, CodingKey { case stage }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        stage = try c.decodeIfPresent(Int.self, forKey: .stage) ?? 0
    }

    public func validate(path p: String = "zero") throws {
        guard (0...2).contains(stage) else {
            throw ConfigError(stage == 3
                ? "\(p).stage: stage 3 (sharded parameters) is not implemented yet; use 0, 1 or 2"
                : "\(p).stage: must be 0, 1 or 2, got \(stage)")
        }
    }
}
