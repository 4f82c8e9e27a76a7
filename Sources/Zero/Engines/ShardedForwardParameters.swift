import Model
import Tensor

/// ZeRO stage 3 for a model that only runs forward (a distillation teacher): the rank keeps its
/// 1/N shard of the model's flat parameter buffer (the ring's cut of it, in `zero.offload_params`'
/// tier) and the model gathers each region from all ranks just before use and frees it after —
/// the student's stage-3 machinery (`RegionParameters`: prefetch, persistent small regions,
/// gathered bytes in the ledger) on the job's collective queue. Every rank runs the model on the
/// same schedule, so the gathers queue in the same order everywhere. No gradients.
public final class ShardedForwardParameters: ParameterResidency {
    private let regionParameters: RegionParameters

    /// - Parameters:
    ///   - name: names the shard's offload file (`<name>-rank<r>`).
    ///   - load: writes elements `range` of the model's initial flat buffer into the shard.
    public init(table: ParameterTable, config: ZeroConfig, queue: CollectiveQueue, ledger: MemoryLedger, name: String,
                load: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        let layout = RegionShards(table: table, plan: PartitionPlan(table: table, worldSize: queue.worldSize), rank: queue.rank)
        regionParameters = try RegionParameters(config: config, layout: layout, queue: queue, ledger: ledger, name: name)
        try load(layout.range, regionParameters.shard.pointer)
        try regionParameters.shardUpdated()
    }

    /// The elements of the flat buffer this rank keeps.
    public var shardRange: Range<Int> { regionParameters.layout.range }
    /// Where the shard lives.
    public var shardTier: MemoryTier { regionParameters.shard.tier }

    public func acquire(_ region: Int, upcoming: ArraySlice<Int>) throws -> UnsafeMutablePointer<Float> {
        try regionParameters.acquire(region, upcoming: upcoming)
    }

    public func release(_ region: Int) { regionParameters.release(region) }

    public func gradients(_ region: Int) throws -> UnsafeMutablePointer<Float> {
        throw ZeroError(.runtime, "a forward-only sharded model has no gradients (region \(region))")
    }

    public func gradientsDone(_ region: Int) throws {
        throw ZeroError(.runtime, "a forward-only sharded model has no gradients (region \(region))")
    }
}
