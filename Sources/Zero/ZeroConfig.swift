import Common
import Foundation

/// The `zero:` section: how model state is sharded across ranks and where it lives (ZeRO,
/// Rajbhandari et al.; keys follow DeepSpeed's where they have a counterpart).
public struct ZeroConfig: ConfigSection, Equatable {
    /// 0: every rank holds everything (gradients all-reduced in buckets during backward).
    /// 1: AdamW state sharded; gradients reduce-scattered after backward, each rank updates its
    /// shard, parameters all-gathered. 2: as 1, and gradients are reduce-scattered region by region
    /// during backward, each rank keeping only its shard. 3: as 2, and parameters are sharded too,
    /// gathered region by region just before use and freed after. See `ZeroStage`.
    public var stage = ZeroStage.replicated
    /// Where AdamW's moments live: none (device), host (worker memory, NUMA-local), disk
    /// (memory-mapped files in `offload_dir`). In fp32 training the parameters are the master
    /// weights; at stage 3 `offload_params` moves the rank's parameter shard as well.
    public var offloadOptimizer: OffloadTier = .none
    /// Stage 3: where the rank's parameter shard lives between gathers (none, host or disk; not
    /// further out than `offload_optimizer`).
    public var offloadParams: OffloadTier = .none
    /// Stage 3: regions (blocks) gathered ahead of the one computing.
    public var prefetchDepth = 1
    /// Stage 3: most parameter elements gathered at once; prefetching stops at this bound.
    public var maxLiveParameters = 1_000_000_000
    /// Stage 3: regions of at most this many elements stay whole on every rank (gathered once
    /// per update instead of twice per micro-batch).
    public var paramPersistenceThreshold = 100_000
    /// Folder of the disk tier's memory-mapped files; default: the system temporary folder.
    public var offloadDir: String?
    /// Wire format of the gradient all-reduce and reduce-scatter: "fp32" or "bf16" (half the
    /// bytes; partial sums rounded to bf16 at each hop, the result accumulated in fp32 shards).
    public var reduceDtype = "fp32"

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("stage", \.stage, read: stage, write: { $0.rawValue }),
        .init("offload_optimizer", \.offloadOptimizer, read: tier, write: { $0.rawValue }),
        .init("offload_params", \.offloadParams, read: tier, write: { $0.rawValue }),
        .init("prefetch_depth", \.prefetchDepth), .init("max_live_parameters", \.maxLiveParameters),
        .init("param_persistence_threshold", \.paramPersistenceThreshold), .init("offload_dir", \.offloadDir), .init("reduce_dtype", \.reduceDtype),
    ]

    /// A stage in a config, by number.
    private static func stage(_ value: any SingleValueDecodingContainer) throws -> ZeroStage {
        let number = try value.decode(Int.self)
        guard let stage = ZeroStage(rawValue: number) else { throw InvalidConfigValue("must be 0, 1, 2 or 3, got \(number)") }
        return stage
    }

    /// A tier in a config, by name.
    private static func tier(_ value: any SingleValueDecodingContainer) throws -> OffloadTier {
        let text = try value.decode(String.self)
        guard let tier = OffloadTier(rawValue: text) else { throw InvalidConfigValue("must be none, host or disk, got \(text)") }
        return tier
    }

    public func validate(path p: String = "zero") throws {
        if offloadParams != .none && !stage.shardsParameters {
            throw ConfigError("\(p).offload_params: parameters are offloaded only at stage 3 (they are sharded only there), got stage \(stage.rawValue)")
        }
        if offloadParams > offloadOptimizer {
            throw ConfigError("\(p).offload_params: \(offloadParams.rawValue) is further out than offload_optimizer (\(offloadOptimizer.rawValue)); offload the optimizer at least as far")
        }
        guard prefetchDepth >= 0 else { throw ConfigError("\(p).prefetch_depth: must be ≥ 0, got \(prefetchDepth)") }
        guard maxLiveParameters >= 1 else { throw ConfigError("\(p).max_live_parameters: must be ≥ 1, got \(maxLiveParameters)") }
        guard paramPersistenceThreshold >= 0 else {
            throw ConfigError("\(p).param_persistence_threshold: must be ≥ 0, got \(paramPersistenceThreshold)")
        }
        guard ["fp32", "bf16"].contains(reduceDtype) else {
            throw ConfigError("\(p).reduce_dtype: must be fp32 or bf16, got \"\(reduceDtype)\"")
        }
    }

    /// Stage 3: regions whose parameters are gathered at once at most (the one in use and those
    /// prefetched) — the planner's "prefetch depth".
    public var regionsGatheredAtOnce: Int { prefetchDepth + 1 }

    /// The tier of the optimizer state and of the stage-3 parameter shard.
    public var optimizerTier: MemoryTier { offloadOptimizer.memoryTier }
    public var parameterTier: MemoryTier { offloadParams.memoryTier }

    public var offloadDirectory: URL? { offloadDir.map { URL(fileURLWithPath: $0) } }
}
