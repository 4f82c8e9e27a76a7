/// trainer_state.json: where a run stands. Random numbers are counter-based functions of
/// (seed, step, micro-batch), so step and seed are the whole RNG state; the data position is
/// the number of sequences consumed, derived from the step. `Config` is the run's whole config
/// (the training module's `TrainConfig`), stored as it encodes itself.
public struct TrainerState<Config: Codable & Sendable>: Codable, Sendable {
    public var formatVersion = 1
    public var step: Int
    public var dataPosition: Int
    public var seed: UInt64
    public var config: Config

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, dataPosition = "data_position", seed, config
    }

    public init(step: Int, dataPosition: Int, seed: UInt64, config: Config) {
        self.step = step
        self.dataPosition = dataPosition
        self.seed = seed
        self.config = config
    }
}
