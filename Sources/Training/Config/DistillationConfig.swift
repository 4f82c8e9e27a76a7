import Common

/// `training.distillation:` — train the model (the student) towards a teacher's softened
/// predictions as well as the labels: loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T))
/// (batch mean over the B·T positions) + (1 − α) · cross-entropy.
public struct DistillationConfig: ConfigSection, Equatable {
    /// The teacher: a ZeroTrain checkpoint directory (or one of its step folders) or a Hugging
    /// Face model folder (config.json + safetensors). Same vocabulary as the student.
    public var teacher = ""
    /// Softmax temperature T (> 0) of both distributions in the KL term.
    public var temperature = 2.0
    /// Weight α of the KL term, 0…1 (1 − α weights the cross-entropy with the labels).
    public var alpha = 0.5
    /// Shard the teacher's parameters across the job's ranks as ZeRO stage 3 shards the student's
    /// (each rank keeps 1/N; each region is gathered just before use and freed after). nil: shard
    /// exactly when the student runs at `zero.stage: 3`. Needs a cluster (`zerotrain local`, a
    /// coordinator); a lone `zerotrain train` process keeps the whole teacher.
    public var shard: Bool?

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("teacher", \.teacher), .init("temperature", \.temperature), .init("alpha", \.alpha), .init("shard", \.shard),
    ]

    public func validate(path p: String = "training.distillation") throws {
        guard !teacher.isEmpty else { throw ConfigError("\(p).teacher: is required (a checkpoint directory or a Hugging Face folder)") }
        guard temperature > 0 && temperature.isFinite else { throw ConfigError("\(p).temperature: must be > 0, got \(temperature)") }
        guard alpha >= 0 && alpha <= 1 else { throw ConfigError("\(p).alpha: must be in [0, 1], got \(alpha)") }
    }
}
