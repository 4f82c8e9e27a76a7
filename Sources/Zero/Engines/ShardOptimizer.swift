import Foundation
import Model
import Optim
import Tensor

/// AdamW over one rank's shard of the flat buffers: the first and second moments of `shard`
/// (indexed relative to it) in the tier `zero.offload_optimizer` names, and the update.
public final class ShardOptimizer {
    /// The elements of the flat buffer this rank updates: all of them at stage 0.
    public let shard: Range<Int>
    /// Elements of the whole flat buffer (Ψ).
    public let count: Int
    public let expAvg: TierBuffer
    public let expAvgSq: TierBuffer
    public let pool: ThreadPool
    private let adamW: AdamW
    private let entries: [ParameterEntry]

    public init(shard: Range<Int>, count: Int, entries: [ParameterEntry], adamW: AdamW, pool: ThreadPool,
                tier: MemoryTier, directory: URL?, rank: Int) throws {
        self.shard = shard
        self.count = count
        self.entries = entries
        self.adamW = adamW
        self.pool = pool
        expAvg = try TierBuffer(count: shard.count, tier: tier, directory: directory, name: "exp_avg-rank\(rank)")
        expAvgSq = try TierBuffer(count: shard.count, tier: tier, directory: directory, name: "exp_avg_sq-rank\(rank)")
    }

    /// One AdamW update of `parameters` (the shard's, `shard.count` elements) from `gradients`,
    /// split across the pool; each thread updates the parts of the tensors that fall in its range,
    /// with weight decay where the tensor has 2+ dimensions. Each gradient is multiplied by
    /// `gradientScale` (the clip factor) as it is read; the buffer is left as it was.
    public func step(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeMutableBufferPointer<Float>, lr: Double, t: Int,
                     gradientScale: Float = 1) {
        precondition(parameters.count == shard.count && gradients.count == shard.count, "the update needs the rank's shard")
        let shard = self.shard, entries = self.entries, adamW = self.adamW
        let p = parameters.baseAddress! - shard.lowerBound, g = gradients.baseAddress! - shard.lowerBound
        let m = expAvg.pointer - shard.lowerBound, v = expAvgSq.pointer - shard.lowerBound
        pool.parallelFor(shard.count, minChunk: 1 << 16) { local in
            let range = (shard.lowerBound + local.lowerBound)..<(shard.lowerBound + local.upperBound)
            for e in entries where e.offset < range.upperBound && e.offset + e.count > range.lowerBound {
                let lo = max(e.offset, range.lowerBound), hi = min(e.offset + e.count, range.upperBound)
                adamW.update(parameters: p + lo, gradients: g + lo, m: m + lo, v: v + lo, count: hi - lo,
                             lr: lr, t: t, decays: e.decays, gradientScale: gradientScale)
            }
        }
    }
}
