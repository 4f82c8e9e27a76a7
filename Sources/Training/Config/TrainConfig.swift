import Common
import Data
import Foundation
import Model
import Optim
import Tensor
import Zero

/// The `training:` section: optimisation, batch shape, checkpoints and logging.
public struct TrainingConfig: ConfigSection, Equatable {
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
    /// Write a checkpoint every N updates (0 = only at the end), when checkpoint_dir is set.
    public var checkpointInterval = 1000
    /// Checkpoints kept: the newest N (older ones are deleted after each commit).
    public var checkpointKeep = 3
    /// Directory of checkpoints (step-NNNNNNNN/ folders and a `latest` file); nil = no checkpoints.
    public var checkpointDir: String?
    /// Print and record metrics every N updates.
    public var logInterval = 1
    /// JSONL metrics file; default <checkpoint_dir>/metrics.jsonl when checkpoint_dir is set.
    public var metricsFile: String?
    /// A Hugging Face model directory (config.json + model.safetensors) to start from instead of a fresh initialisation.
    public var initFrom: String?
    /// Library of the matrix products: "onednn" (default) or "openblas" (the portable fallback).
    public var gemm = GEMMBackend.onednn
    /// Precision of the matrix products: "fp32", "bf16", "fp16" or "fp8" (low-precision operands;
    /// fp32 master weights, moments, accumulation, norms, softmax, router and loss). fp16 scales
    /// the loss dynamically; fp8 is simulated (rounded to e4m3/e5m2, multiplied in fp32).
    public var precision = Precision.fp32
    /// fp16: the initial dynamic loss scale (the loss is multiplied by it before backward).
    public var lossScale: Double = 65536
    /// fp16: clean updates in a row after which the loss scale doubles.
    public var lossScaleGrowthInterval = 2000
    /// fp8: amaxes each tensor's delayed scale remembers (scale = fp8 max / max of the history).
    public var fp8AmaxHistory = 16
    /// Activation recomputation: none, every_layer, or {every_k: K} (keep the inputs of groups of
    /// K blocks and recompute a group's forward in backward).
    public var activationCheckpointing = ActivationCheckpointing.none
    /// Evaluate on the held-out data (data.validation_fraction or data.validation_path) every N
    /// updates and after the last; 0 = never.
    public var evalInterval = 0
    /// Sequences of data.seq_len + 1 tokens per evaluation: the first N windows of the
    /// validation tokens, the same ones every time (0 = all of them).
    public var evalSequences = 64
    /// Knowledge distillation from a teacher model; nil = plain training.
    public var distillation: DistillationConfig?

    public init() {}

    /// The optimizer's keys stand directly under `training:`, then the section's own.
    public static let fields: [ConfigField<Self>] = OptimizerConfig.fields.map { $0.inlined(at: \.optim) } + [
        .init("total_steps", \.totalSteps), .init("micro_batch_size", \.microBatchSize),
        .init("gradient_accumulation_steps", \.gradientAccumulationSteps), .init("seed", \.seed),
        .init("threads", \.threads), .init("checkpoint_interval", \.checkpointInterval), .init("checkpoint_keep", \.checkpointKeep),
        .init("checkpoint_dir", \.checkpointDir), .init("log_interval", \.logInterval),
        .init("metrics_file", \.metricsFile), .init("init_from", \.initFrom),
        .init("eval_interval", \.evalInterval), .init("eval_sequences", \.evalSequences),
        .init("distillation", \.distillation),
        .init("gemm", \.gemm, read: { try named($0, "onednn or openblas") }, write: { $0.rawValue }),
        .init("precision", \.precision, read: { try trainable(named($0, Precision.trainingNames)) }, write: { $0.rawValue }),
        .init("loss_scale", \.lossScale), .init("loss_scale_growth_interval", \.lossScaleGrowthInterval),
        .init("fp8_amax_history", \.fp8AmaxHistory),
        .init("activation_checkpointing", \.activationCheckpointing, read: checkpointing, write: { c -> (any Encodable)? in
            switch c {
            case .none: "none"
            case .everyK(1): "every_layer"
            case .everyK(let k): ["every_k": k]
            }
        }),
    ]

    /// none | every_layer | {every_k: K}.
    private static func checkpointing(_ value: any SingleValueDecodingContainer) throws -> ActivationCheckpointing {
        if let text = try? value.decode(String.self) {
            switch text {
            case "none": return .none
            case "every_layer": return .everyLayer
            default: throw InvalidConfigValue("must be none, every_layer or {every_k: K}, got \"\(text)\"")
            }
        }
        guard let map = try? value.decode([String: Int].self), map.count == 1, let k = map["every_k"] else {
            throw InvalidConfigValue("must be none, every_layer or {every_k: K}")
        }
        guard k >= 1 else { throw InvalidConfigValue("every_k must be ≥ 1, got \(k)") }
        return .everyK(k)
    }

    /// A value of a string-backed enum in a config, by name.
    private static func named<Value: RawRepresentable<String>>(_ value: any SingleValueDecodingContainer, _ allowed: String) throws -> Value {
        let text = try value.decode(String.self)
        guard let v = Value(rawValue: text) else { throw InvalidConfigValue("must be \(allowed), got \"\(text)\"") }
        return v
    }

    /// int8 is an inference precision (`zerotrain quantize`), not a training one.
    private static func trainable(_ precision: Precision) throws -> Precision {
        guard precision.trains else { throw InvalidConfigValue("must be \(Precision.trainingNames), got \"\(precision.rawValue)\" (int8 is for inference: zerotrain quantize)") }
        return precision
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
        guard lossScale > 0 && lossScale <= Double(Float.greatestFiniteMagnitude) else {
            throw fail("loss_scale", "must be a positive finite number, got \(lossScale)")
        }
        guard lossScaleGrowthInterval >= 1 else { throw fail("loss_scale_growth_interval", "must be ≥ 1, got \(lossScaleGrowthInterval)") }
        guard fp8AmaxHistory >= 1 else { throw fail("fp8_amax_history", "must be ≥ 1, got \(fp8AmaxHistory)") }
        guard microBatchSize >= 1 else { throw fail("micro_batch_size", "must be ≥ 1, got \(microBatchSize)") }
        guard gradientAccumulationSteps >= 1 else {
            throw fail("gradient_accumulation_steps", "must be ≥ 1, got \(gradientAccumulationSteps)")
        }
        guard threads >= 1 && threads <= 256 else { throw fail("threads", "must be in 1…256, got \(threads)") }
        guard checkpointInterval >= 0 else { throw fail("checkpoint_interval", "must be ≥ 0, got \(checkpointInterval)") }
        guard checkpointKeep >= 1 else { throw fail("checkpoint_keep", "must be ≥ 1, got \(checkpointKeep)") }
        guard logInterval >= 1 else { throw fail("log_interval", "must be ≥ 1, got \(logInterval)") }
        guard evalInterval >= 0 else { throw fail("eval_interval", "must be ≥ 0 (0 = no evaluation), got \(evalInterval)") }
        guard evalSequences >= 0 else { throw fail("eval_sequences", "must be ≥ 0 (0 = all), got \(evalSequences)") }
        try distillation?.validate(path: "\(p).distillation")
    }
}

/// A whole config file: `model:` (required), `training:`, `data:`, `cluster:`, `zero:`, `device:`
/// and `fault_tolerance:`.
public struct TrainConfig: ConfigSection, Equatable {
    /// The network: architecture, sizes, initialisation.
    public var model: ModelConfig
    /// Optimisation, batch shape, checkpoints and logging.
    public var training: TrainingConfig
    /// Where the tokens come from.
    public var data: DataConfig
    /// How the coordinator and workers run the job.
    public var cluster: ClusterConfig
    /// ZeRO sharding and offload.
    public var zero: ZeroConfig
    /// The device memory budget (modelled on a GPU profile); nil = unlimited.
    public var device: DeviceConfig?
    /// What the job does when a worker dies or training diverges.
    public var faultTolerance: FaultToleranceConfig
    /// CURVE keys and the data plane's encryption; nil = no keys (loopback only).
    public var security: SecurityConfig?
    /// Optional measurements (per-layer gradient norms); nil = none.
    public var telemetry: TelemetryConfig?

    public init(model: ModelConfig, training: TrainingConfig = TrainingConfig(), data: DataConfig = DataConfig(),
                cluster: ClusterConfig = ClusterConfig(), zero: ZeroConfig = ZeroConfig(), device: DeviceConfig? = nil,
                faultTolerance: FaultToleranceConfig = FaultToleranceConfig()) {
        self.model = model
        self.training = training
        self.data = data
        self.cluster = cluster
        self.zero = zero
        self.device = device
        self.faultTolerance = faultTolerance
    }

    /// Every section at its defaults.
    public init() { self.init(model: ModelConfig()) }

    public static let fields: [ConfigField<Self>] = [
        .required("model", \.model), .init("training", \.training), .init("data", \.data),
        .init("cluster", \.cluster), .init("zero", \.zero), .init("device", \.device),
        .init("fault_tolerance", \.faultTolerance), .init("security", \.security), .init("telemetry", \.telemetry),
    ]

    /// Cross-section rules plus each section's own.
    public func validate() throws {
        do {
            try model.validate(path: "model")
            try data.validate(path: "data")
        } catch let e as ModelError {
            throw ConfigError(e)
        } catch let e as DataError {
            throw ConfigError(e)
        }
        try training.validate(path: "training")
        try cluster.validate(path: "cluster")
        try zero.validate(path: "zero")
        try faultTolerance.validate(path: "fault_tolerance")
        try security?.validate(path: "security")
        do {
            try device?.validate(path: "device")
        } catch let e as ZeroError {
            throw ConfigError(e)
        }
        if training.evalInterval > 0, data.validationFraction == 0, data.validationPath == nil, data.source != "tokens" {
            throw ConfigError("training.eval_interval: needs held-out data: set data.validation_fraction or data.validation_path")
        }
        if data.seqLen > model.maxSeqLen {
            throw ConfigError("data.seq_len: must be ≤ model.max_seq_len (\(model.maxSeqLen)), got \(data.seqLen)")
        }
        if data.source == "shards", let path = data.path,
           let first = try? TokenShard.files(at: path, split: data.split ?? "train").first,
           let shard = try? TokenShard(path: first, verify: false), shard.vocabularySize > model.vocabSize {
            throw ConfigError("model.vocab_size: must be ≥ the vocabulary of the token shards (\(shard.vocabularySize) in \(first)), got \(model.vocabSize)")
        }
        if let file = data.tokenizer {
            let tokenizer: BPETokenizer
            do { tokenizer = try BPETokenizer.load(path: file) } catch let e as DataError { throw ConfigError("data.tokenizer: \(e.message)") }
            if tokenizer.vocabularySize > model.vocabSize {
                throw ConfigError("model.vocab_size: must be ≥ the vocabulary of data.tokenizer (\(tokenizer.vocabularySize) in \(file)), got \(model.vocabSize)")
            }
        } else if data.source != "tokens" && data.source != "shards" && model.vocabSize < ByteTokenizer.vocabularySize {
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
                throw ConfigError(e)
            }
        }
        let config = try ConfigDecoder.decode(TrainConfig.self, from: tree)
        try config.validate()
        return config
    }
}
