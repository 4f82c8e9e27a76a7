/// The `zero:` section: how optimizer state, gradients and parameters are sharded across ranks.
public struct ZeroConfig: Codable, Sendable, Equatable {
    /// 0: every rank holds everything (data parallel). 1: AdamW state sharded — gradients are
    /// all-reduced, each rank updates its shard, parameters are all-gathered. 2: as 1, but gradients
    /// are reduce-scattered so each rank only reduces into its own shard.
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
