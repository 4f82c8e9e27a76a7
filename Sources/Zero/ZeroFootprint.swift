import Model

/// What one rank holds for a ZeRO stage and offload choice — the ZeRO memory formulas, written
/// once. The memory ledger reserves these bytes before a rank builds anything, and
/// `MemoryPlanner` (`zerotrain plan`) sums them per device, host and disk.
///
/// fp32 training with AdamW and no separate master copy: parameters 4Ψ, gradients 4Ψ, m and v 8Ψ
/// bytes. With s = ⌈Ψ/N⌉ (the largest shard of `PartitionPlan`) the model states are 16Ψ
/// (stage 0), 8Ψ + 8s (1), 4Ψ + 12s (2), 16s (3); offload moves the optimizer's 8s (and at stage 3
/// the parameters' 4s) to the host or its disk. Then the activations of one micro-batch, and the
/// communication buffers: two gradient buckets at stages 0–1; at stages 2–3 two regions' full
/// gradients (one being reduce-scattered while backward fills the next) and at stage 3 the
/// parameters of the regions gathered at once — those two are the *working set*, allocated while
/// training runs and only checked against the budget up front.
public struct ZeroFootprint: Sendable, Equatable {
    public struct Item: Sendable, Equatable {
        public let category: MemoryLedger.Category
        public let tier: MemoryTier
        public let bytes: Int
        /// What the bytes are, for out-of-memory messages ("the AdamW moments").
        public let what: String
        /// False for the stage 2–3 working set: allocated while training, checked up front.
        public let upFront: Bool
    }

    public let stage: ZeroStage
    public let items: [Item]

    /// - Parameters:
    ///   - parameters: Ψ, elements of the flat parameter buffer.
    ///   - ranks: N.
    ///   - largestRegion: elements of the largest region (`ParameterTable.regions`), the unit
    ///     stages 2–3 reduce and stage 3 gathers.
    ///   - bucketBytes: bytes of one gradient bucket (0 when nothing is bucketed, e.g. one rank).
    ///   - regionsGatheredAtOnce: stage 3: regions whose parameters are gathered at the same time
    ///     (the one in use and those prefetched).
    ///   - weightCopies: mixed precision: a copy of the weights in that format, which the products
    ///     read (`Precision.weightCopyBytes` per element: bf16 and fp16 2Ψ, fp8 Ψ; or at stage 3
    ///     per gathered element), beside the fp32 master weights, gradients and moments — e.g.
    ///     2 + 4 + 12 bytes per parameter at stage 0 in bf16 or fp16, 1 + 4 + 12 in fp8.
    public init(stage: ZeroStage, optimizerTier: MemoryTier, parameterTier: MemoryTier, parameters psi: Int, ranks: Int,
                largestRegion: Int, activationBytes: Int, bucketBytes: Int, regionsGatheredAtOnce: Int, weightCopies: Precision = .fp32) {
        let shard = (psi + ranks - 1) / ranks
        var items = [
            Item(category: .params, tier: stage.shardsParameters ? parameterTier : .device,
                 bytes: 4 * (stage.shardsParameters ? shard : psi), what: "the parameters", upFront: true),
            Item(category: .grads, tier: .device, bytes: 4 * (stage.shardsGradients ? shard : psi), what: "the gradients", upFront: true),
            Item(category: .optimizer, tier: optimizerTier, bytes: 8 * (stage.shardsOptimizerState ? shard : psi),
                 what: "the AdamW moments", upFront: true),
            Item(category: .activations, tier: .device, bytes: activationBytes, what: "the activations of one micro-batch", upFront: true),
        ]
        let copyBytes = weightCopies.weightCopyBytes
        if copyBytes > 0 && !stage.shardsParameters {
            items.insert(Item(category: .params, tier: .device, bytes: copyBytes * psi, what: "the \(weightCopies) weight copies", upFront: true),
                         at: 1)
        }
        if !stage.shardsGradients {
            if bucketBytes > 0 {
                items.append(Item(category: .comm, tier: .device, bytes: 2 * bucketBytes, what: "the communication buckets", upFront: true))
            }
        } else {
            let gathered = stage.shardsParameters ? regionsGatheredAtOnce * largestRegion : 0
            items.append(Item(category: stage.shardsParameters ? .gathered : .comm, tier: .device,
                              bytes: 4 * (2 * largestRegion + gathered) + copyBytes * gathered,
                              what: "the \(stage) working set (region gradients being reduced"
                                  + (stage.shardsParameters ? ", gathered parameters)" : ")"),
                              upFront: false))
        }
        self.stage = stage
        self.items = items
    }

    /// Bytes in `tier`, optionally of one category only.
    public func bytes(in tier: MemoryTier, _ category: MemoryLedger.Category? = nil) -> Int {
        items.filter { $0.tier == tier && (category == nil || $0.category == category) }.reduce(0) { $0 + $1.bytes }
    }

    /// Enters the up-front items into `ledger` (out-of-memory errors carry `advice`) and checks
    /// that the working set fits on top of them.
    public func reserve(in ledger: MemoryLedger, advice: String) throws {
        for item in items {
            if item.upFront {
                try ledger.allocate(item.bytes, item.category, tier: item.tier, what: item.what, advice: advice)
            } else {
                try ledger.require(item.bytes, item.category, what: item.what, advice: advice)
            }
        }
    }

    /// What to try when this stage does not fit, for out-of-memory messages.
    public static func advice(stage: ZeroStage, ranks: Int, optimizerOffloaded: Bool) -> String {
        let next: String
        switch stage {
        case .replicated where ranks > 1:
            next = "zero.stage 1 or 2 shards the optimizer state (8Ψ/N per rank instead of 8Ψ), stage 3 all model states (16Ψ/N)"
        case .optimizerSharded, .gradientsSharded:
            next = "zero.stage 3 shards the parameters too (16Ψ/N per rank), and zero.offload_optimizer: host moves the AdamW moments off the device"
        case .parametersSharded where !optimizerOffloaded:
            next = "zero.offload_optimizer: host (and offload_params: host) moves the optimizer state (and parameters) off the device"
        default:
            next = "use more ranks, or a smaller training.micro_batch_size or data.seq_len"
        }
        return next + "; `zerotrain plan` shows what fits"
    }
}
