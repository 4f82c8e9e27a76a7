import Common
import Data
import Foundation
import Model
import Optim
import Zero

/// The `training:` section: optimisation, batch shape, checkpoints and logging.
public struct TrainingConfig: Codable, Sendable, Equatable {
    /// Optimizer, learning-rate schedule and clipping (keys optimizer, lr, betas, eps,
    /// weight_decay, schedule, warmup_steps, num_cycles, grad_clip).
    public var optim = OptimizerConfig()
    /// Optimizer updates to run; also the end of the schedule.
    public var totalSteps = 100
    /// Sequences per micro-batch (per rank).
    public var microBatchSize = 8
    /// Micro-batches per update (their gradients are summed, each loss divided by this count).
    public var gradientAccumulationSteps = 1
    /// Seed of initialisation, data order and dropout.
    public var seed: UInt64 = 1234
    /// Compute threads (and OpenBLAS threads) per process.
    public var threads = 1
    /// Write a checkpoint every N updates (0 = only at the end when checkpoint_dir is set).
    public var checkpointInterval = 0
    /// Directory of checkpoints (step-NNNNNNNN/ folders and a `latest` file); nil = no checkpoints.
    public var checkpointDir: String?
    /// Print and record metrics every N updates.
    public var logInterval = 1
    /// JSONL metrics file; default <checkpoint_dir>/metrics.jsonl when checkpoint_dir is set.
    public var metricsFile: String?
    /// A Hugging Face model directory (config.json + model.safetensors) to start from instead of a fresh initialisation.
    public var initFrom: String?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case optimizer, lr, betas, eps, weightDecay = "weight_decay", schedule, warmupSteps = "warmup_steps"
        case numCycles = "num_cycles", gradClip = "grad_clip", totalSteps = "total_steps"
        case microBatchSize = "micro_batch_size", gradientAccumulationSteps = "gradient_accumulation_steps"
        case seed, threads, checkpointInterval = "checkpoint_interval", checkpointDir = "checkpoint_dir"
        case logInterval = "log_interval", metricsFile = "metrics_file", initFrom = "init_from"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainingConfig()
        var o = d.optim
        o.optimizer = try c.decodeIfPresent(String.self, forKey: .optimizer) ?? o.optimizer
        o.lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? o.lr
        o.betas = try c.decodeIfPresent([Double].self, forKey: .betas) ?? o.betas
        o.eps = try c.decodeIfPresent(Double.self, forKey: .eps) ?? o.eps
        o.weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? o.weightDecay
        o.schedule = try c.decodeIfPresent(String.self, forKey: .schedule) ?? o.schedule
        o.warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? o.warmupSteps
        o.numCycles = try c.decodeIfPresent(Double.self, forKey: .numCycles) ?? o.numCycles
        o.gradClip = try c.decodeIfPresent(Double.self, forKey: .gradClip) ?? o.gradClip
        optim = o
        totalSteps = try c.decodeIfPresent(Int.self, forKey: .totalSteps) ?? d.totalSteps
        microBatchSize = try c.decodeIfPresent(Int.self, forKey: .microBatchSize) ?? d.microBatchSize
        gradientAccumulationSteps = try c.decodeIfPresent(Int.self, forKey: .gradientAccumulationSteps) ?? d.gradientAccumulationSteps
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? d.threads
        checkpointInterval = try c.decodeIfPresent(Int.self, forKey: .checkpointInterval) ?? d.checkpointInterval
        checkpointDir = try c.decodeIfPresent(String.self, forKey: .checkpointDir)
        logInterval = try c.decodeIfPresent(Int.self, forKey: .logInterval) ?? d.logInterval
        metricsFile = try c.decodeIfPresent(String.self, forKey: .metricsFile)
        initFrom = try c.decodeIfPresent(String.self, forKey: .initFrom)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(optim.optimizer, forKey: .optimizer)
        try c.encode(optim.lr, forKey: .lr)
        try c.encode(optim.betas, forKey: .betas)
        try c.encode(optim.eps, forKey: .eps)
        try c.encode(optim.weightDecay, forKey: .weightDecay)
        try c.encode(optim.schedule, forKey: .schedule)
        try c.encode(optim.warmupSteps, forKey: .warmupSteps)
        try c.encode(optim.numCycles, forKey: .numCycles)
        try c.encode(optim.gradClip, forKey: .gradClip)
        try c.encode(totalSteps, forKey: .totalSteps)
        try c.encode(microBatchSize, forKey: .microBatchSize)
        try c.encode(gradientAccumulationSteps, forKey: .gradientAccumulationSteps)
        try c.encode(seed, forKey: .seed)
        try c.encode(threads, forKey: .threads)
        try c.encode(checkpointInterval, forKey: .checkpointInterval)
        try c.encodeIfPresent(checkpointDir, forKey: .checkpointDir)
        try c.encode(logInterval, forKey: .logInterval)
        try c.encodeIfPresent(metricsFile, forKey: .metricsFile)
        try c.encodeIfPresent(initFrom, forKey: .initFrom)
    }

    public var schedule: LRSchedule {
        LRSchedule(kind: LRSchedule.Kind(rawValue: optim.schedule) ?? .cosine, warmupSteps: optim.warmupSteps,
                   totalSteps: totalSteps, numCycles: optim.numCycles)
    }

    public func validate(path p: String = "training") throws {
        func fail(_ f: String, _ rule: String) -> ConfigError { ConfigError("\(p).\(f): \(rule)") }
        guard optim.optimizer == "adamw" else { throw fail("optimizer", "must be \"adamw\", got \"\(optim.optimizer)\"") }
        guard optim.lr > 0 && optim.lr.isFinite else { throw fail("lr", "must be > 0, got \(optim.lr)") }
        guard optim.betas.count == 2, optim.betas.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
            throw fail("betas", "must be two numbers in [0, 1), got \(optim.betas)")
        }
        guard optim.eps > 0 else { throw fail("eps", "must be > 0, got \(optim.eps)") }
        guard optim.weightDecay >= 0 else { throw fail("weight_decay", "must be ≥ 0, got \(optim.weightDecay)") }
        guard LRSchedule.Kind(rawValue: optim.schedule) != nil else {
            throw fail("schedule", "must be cosine, linear or constant, got \"\(optim.schedule)\"")
        }
        guard totalSteps >= 1 else { throw fail("total_steps", "must be ≥ 1, got \(totalSteps)") }
        guard optim.warmupSteps >= 0 && optim.warmupSteps <= totalSteps else {
            throw fail("warmup_steps", "must be in 0…total_steps (\(totalSteps)), got \(optim.warmupSteps)")
        }
        guard optim.numCycles > 0 else { throw fail("num_cycles", "must be > 0, got \(optim.numCycles)") }
        guard optim.gradClip >= 0 else { throw fail("grad_clip", "must be ≥ 0 (0 disables clipping), got \(optim.gradClip)") }
        guard microBatchSize >= 1 else { throw fail("micro_batch_size", "must be ≥ 1, got \(microBatchSize)") }
        guard gradientAccumulationSteps >= 1 else {
            throw fail("gradient_accumulation_steps", "must be ≥ 1, got \(gradientAccumulationSteps)")
        }
        guard threads >= 1 && threads <= 256 else { throw fail("threads", "must be in 1…256, got \(threads)") }
        guard checkpointInterval >= 0 else { throw fail("checkpoint_interval", "must be ≥ 0, got \(checkpointInterval)") }
        guard logInterval >= 1 else { throw fail("log_interval", "must be ≥ 1, got \(logInterval)") }
    }
}

/// A whole config file: `model:`, `training:` and `data:`. Every section is optional.
public struct TrainConfig: Codable, Sendable, Equatable {
    public var model: ModelConfig
    public var training: TrainingConfig
    public var data: DataConfig
    public var cluster: ClusterConfig
    public var zero: ZeroConfig
    /// The device memory budget (GPU tier model); nil = unlimited.
    public var device: DeviceConfig?

    public init(model: ModelConfig, training: TrainingConfig = TrainingConfig(), data: DataConfig = DataConfig(),
                cluster: ClusterConfig = ClusterConfig(), zero: ZeroConfig = ZeroConfig(), device: DeviceConfig? = nil) {
        self.model = model
        self.training = training
        self.data = data
        self.cluster = cluster
        self.zero = zero
        self.device = device
    }

    enum CodingKeys: String, CodingKey { case model, training, data, cluster, zero, device }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(ModelConfig.self, forKey: .model)
        training = try c.decodeIfPresent(TrainingConfig.self, forKey: .training) ?? TrainingConfig()
        data = try c.decodeIfPresent(DataConfig.self, forKey: .data) ?? DataConfig()
        cluster = try c.decodeIfPresent(ClusterConfig.self, forKey: .cluster) ?? ClusterConfig()
        zero = try c.decodeIfPresent(ZeroConfig.self, forKey: .zero) ?? ZeroConfig()
        device = try c.decodeIfPresent(DeviceConfig.self, forKey: .device)
    }

    /// Cross-section rules plus each section's own.
    public func validate() throws {
        do {
            try model.validate(path: "model")
            try data.validate(path: "data")
        } catch let e as ModelError {
            throw ConfigError(e.message)
        } catch let e as DataError {
            throw ConfigError(e.message)
        }
        try training.validate(path: "training")
        try cluster.validate(path: "cluster")
        try zero.validate(path: "zero")
        do {
            try device?.validate(path: "device")
        } catch let e as ZeroError {
            throw ConfigError(e.message)
        }
        if data.seqLen > model.maxSeqLen {
            throw ConfigError("data.seq_len: must be ≤ model.max_seq_len (\(model.maxSeqLen)), got \(data.seqLen)")
        }
        if data.source != "tokens" && model.vocabSize < ByteTokenizer.vocabularySize {
            throw ConfigError("model.vocab_size: must be ≥ 256 for the byte-level tokenizer of data.source \(data.source), got \(model.vocabSize)")
        }
    }

    /// Parses and validates a config file: YAML with model/training/data sections, or a
    /// Hugging Face config.json (model_type llama, mistral or mixtral) for the model with defaults elsewhere.
    public static func load(path: String) throws -> TrainConfig {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw ConfigError("\(path): cannot read the config file")
        }
        guard let text = String(data: bytes, encoding: .utf8) else { throw ConfigError("\(path): not UTF-8 text") }
        return try parse(text: text, source: path)
    }

    public static func parse(text: String, source: String = "config") throws -> TrainConfig {
        let tree = try ConfigValue.parse(yaml: text, source: source)
        if case .map(let pairs) = tree, pairs.contains(where: { $0.key == "model_type" }) {
            do {
                let model = try ModelConfig(huggingFaceJSON: Data(text.utf8), path: source)
                // The model part is validated; cross-section rules (vocabulary vs tokenizer) are
                // checked when a run starts, after the caller has chosen its data.
                var config = TrainConfig(model: model)
                config.data.seqLen = min(config.data.seqLen, model.maxSeqLen)
                return config
            } catch let e as ModelError {
                throw ConfigError(e.message)
            }
        }
        let config = try ConfigDecoder.decode(TrainConfig.self, from: tree)
        try config.validate()
        return config
    }
}
