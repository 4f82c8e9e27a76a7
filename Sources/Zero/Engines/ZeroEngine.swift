import Foundation
import Model
import Optim
import Tensor

/// What one rank does with gradients, optimizer state and parameters in a step, for one ZeRO
/// stage (`Stage0Engine` … `Stage3Engine`, made by `makeZeroEngine`).
///
/// A step, as `Trainer.trainStep` drives it: `beginStep`; forward and backward of each
/// micro-batch, backward reporting finished gradient ranges to `gradientsReady` (and, at stages
/// 2–3, reading parameters and writing gradients region by region through the engine, which is
/// the model's `residency`); `reduce` (the reduction, the loss terms and the global gradient norm
/// across ranks); `update` (AdamW on the rank's shard, clipping the gradients as it reads them); `parametersUpdated` (the gathers
/// after the update). A checkpoint holds each rank's shard (`parameterShard`'s elements of the
/// flat buffer, and the optimizer's moments); `loadParameters` and `loadOptimizerState` put a
/// checkpoint's state back, whatever the stage and world size it was written with. Every call that communicates is a
/// collective: every rank makes it, in the same order.
public protocol ZeroEngine: AnyObject {
    var stage: ZeroStage { get }
    /// AdamW's moments for the rank's shard, and the update.
    var optimizer: ShardOptimizer { get }
    /// The rank's collectives; nil when training alone.
    var queue: CollectiveQueue? { get }
    /// Where the model gets each region's parameters and gradient buffer (stages 2–3); nil = its own buffers.
    var residency: (any ParameterResidency)? { get }
    /// What the step's micro-batches accumulate gradients into: the model's gradient buffer at
    /// stages 0–1, the rank's reduced gradient shard at stages 2–3.
    var accumulatedGradients: UnsafeMutableBufferPointer<Float> { get }
    /// The parameters AdamW updates: all of them at stage 0, the rank's shard otherwise.
    var parameterShard: UnsafeMutableBufferPointer<Float> { get }
    /// The rank's averaged gradients once `reduce` returned, aligned with `parameterShard`.
    var gradientShard: UnsafeMutableBufferPointer<Float> { get }
    /// State in memory tiers that are read back ahead of use (the disk tier).
    var offloadedState: [TierBuffer] { get }

    /// What backward tells as gradient ranges become final, or nil. `lastMicroBatch`: the step's last.
    func gradientsReady(lastMicroBatch: Bool) -> ((Range<Int>) -> Void)?
    /// After the last backward: finishes the gradient reduction and sums across ranks, in the one
    /// scalar all-reduce of the step, the loss terms, the squared gradient norm of the shards,
    /// `counts` (per-rank tallies of the same length on every rank: MoE routing counts) and, for
    /// each of `normRegions` (flat-buffer ranges; empty = none), the squared norm of its gradients.
    func reduce(lossSum: Double, auxSum: Double, counts: [Double], normRegions: [Range<Int>]) throws -> StepTotals
    /// After `update`: makes every rank's copy of the parameters current.
    func parametersUpdated() throws
    /// All parameters, gathered where they are sharded (a collective then).
    func fullParameters() throws -> FloatBuffer
    /// Replaces the parameters the rank keeps: `fill(elements, destination)` writes the flat
    /// elements `elements` (all of them, or the rank's shard at stage 3) to `destination`.
    /// Every rank calls it (stage 3 gathers its persistent regions afterwards: a collective).
    func loadParameters(_ fill: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws
}

/// The loss terms and gradient norm of a step, the same on every rank.
public struct StepTotals: Sendable, Equatable {
    /// Σ of the micro-batch losses (and aux losses) of one rank, averaged over ranks.
    public var lossSum: Double
    public var auxSum: Double
    /// Global L2 norm of the averaged gradients, before clipping.
    public var gradNorm: Double
    /// The `counts` passed to `reduce`, summed over ranks.
    public var counts: [Double] = []
    /// L2 norm of the averaged gradients (before clipping) of each of `reduce`'s `normRegions`, over all ranks.
    public var regionNorms: [Double] = []
}

extension ZeroEngine {
    public var worldSize: Int { queue?.worldSize ?? 1 }

    /// Before the step's first forward: starts reading disk-tier state back and zeroes the gradient accumulation.
    public func beginStep() {
        for b in offloadedState { b.prefetch() }
        let grads = accumulatedGradients, base = grads.baseAddress!
        optimizer.pool.parallelFor(grads.count, minChunk: 1 << 16) { r in (base + r.lowerBound).update(repeating: 0, count: r.count) }
    }

    /// AdamW with rate `lr` on the rank's shard; `t` is the 1-based update count. The gradients
    /// are clipped for the global `norm` (torch's clip_grad_norm_; maxNorm 0 = no clipping) as
    /// AdamW reads them; `unscale` divides out an fp16 loss scale first (`norm` is then the
    /// unscaled gradients' norm).
    public func update(lr: Double, t: Int, norm: Double, maxNorm: Double, unscale: Float = 1) {
        optimizer.step(parameters: parameterShard, gradients: gradientShard, lr: lr, t: t,
                       gradientScale: GradientClipping.factor(norm: norm, maxNorm: maxNorm, unscale: unscale))
    }

    /// Replaces the moments of the rank's optimizer shard: `fill(expAvg?, elements, destination)`
    /// writes the flat elements `elements` (`optimizer.shard`) of the first moment (true) or the second (false).
    public func loadOptimizerState(_ fill: (_ expAvg: Bool, Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        try fill(true, optimizer.shard, optimizer.expAvg.pointer)
        try fill(false, optimizer.shard, optimizer.expAvgSq.pointer)
    }

    /// The whole of a sharded flat buffer: `part` (this rank's shard) placed in a full-size buffer
    /// that is then all-gathered. Transient (divergence checks): it lives in host
    /// memory, outside the device budget.
    func gathered(_ part: UnsafeMutableBufferPointer<Float>) throws -> FloatBuffer {
        let s = optimizer.shard, full = FloatBuffer(count: optimizer.count)
        _ = full.slice(s.lowerBound, s.count).update(fromContentsOf: part)
        if s.count != optimizer.count, let queue { try queue.allGather(full.buffer) }
        return full
    }

    /// Sharded stages: the shards' squared norms (the whole shard's and each region's part of it)
    /// are summed with the loss terms and counts in one scalar all-reduce, whose result is the
    /// same on every rank.
    func shardedTotals(lossSum: Double, auxSum: Double, counts: [Double], normRegions: [Range<Int>]) throws -> StepTotals {
        let squares = GradientClipping.sumOfSquares(gradientShard, pool: optimizer.pool)
        let local = [lossSum, auxSum, squares] + counts + regionSquares(normRegions)
        let totals = try queue.map { try $0.allReduceScalars(local) } ?? local
        let n = Double(worldSize), k = 3 + counts.count
        return StepTotals(lossSum: totals[0] / n, auxSum: totals[1] / n, gradNorm: totals[2].squareRoot(),
                          counts: Array(totals[3..<k]), regionNorms: totals[k...].map { $0.squareRoot() })
    }

    /// Σ g² of the rank's gradient shard (`gradientShard`, the flat elements `optimizer.shard`)
    /// within each region; 0 for a region outside the shard.
    func regionSquares(_ regions: [Range<Int>]) -> [Double] {
        let shard = optimizer.shard, grads = gradientShard
        return regions.map { region in
            let own = region.clamped(to: shard)
            guard !own.isEmpty else { return 0 }
            let part = grads[(own.lowerBound - shard.lowerBound)..<(own.upperBound - shard.lowerBound)]
            return GradientClipping.sumOfSquares(UnsafeMutableBufferPointer(rebasing: part), pool: optimizer.pool)
        }
    }
}

/// The engine of `stage` for one rank.
/// - Parameters:
///   - stage: the stage in effect: `config.stage` with peers, `.replicated` for a rank training alone.
///   - parameters, gradients: the model's buffers (empty where the stage shards them: the model is
///     built with `ownsParameters: !stage.shardsParameters, ownsGradients: !stage.shardsGradients`).
///   - queue: the rank's collectives; nil trains alone (stage 0 only).
///   - initialParameters: stage 3 fills the rank's new parameter shard with it (elements, destination).
public func makeZeroEngine(stage: ZeroStage, config: ZeroConfig, table: ParameterTable, parameters: FloatBuffer,
                           gradients: FloatBuffer, pool: ThreadPool, queue: CollectiveQueue?, plan: PartitionPlan,
                           ledger: MemoryLedger, adamW: AdamW, bucketElements: Int,
                           initialParameters: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws -> any ZeroEngine {
    let rank = queue?.rank ?? 0
    let shard = stage.shardsOptimizerState ? plan.shardRange(rank) : 0..<table.count
    let optimizer = try ShardOptimizer(shard: shard, count: table.count, entries: table.entries, adamW: adamW, pool: pool,
                                       tier: config.optimizerTier, directory: config.offloadDirectory, rank: rank)
    func peers() -> CollectiveQueue {
        guard let queue else { preconditionFailure("ZeRO \(stage) needs the rank's collectives") }
        return queue
    }
    switch stage {
    case .replicated:
        return Stage0Engine(parameters: parameters, gradients: gradients, optimizer: optimizer, queue: queue,
                            bucketElements: bucketElements)
    case .optimizerSharded:
        return Stage1Engine(parameters: parameters, gradients: gradients, optimizer: optimizer, queue: peers())
    case .gradientsSharded:
        return try Stage2Engine(parameters: parameters, table: table, plan: plan, optimizer: optimizer, queue: peers(), ledger: ledger)
    case .parametersSharded:
        return try Stage3Engine(config: config, table: table, plan: plan, optimizer: optimizer, queue: peers(), ledger: ledger,
                                initialParameters: initialParameters)
    }
}
