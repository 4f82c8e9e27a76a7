import Comm
import Model
import Tensor

/// ZeRO stage 3: as stage 2, and the parameters are sharded too. The model owns neither
/// parameters nor gradients; it acquires each region's parameters through this engine, which
/// gathers them from the ranks' shards just before use (`RegionParameters`), and its gradients go
/// region by region into reduce-scatters (`RegionGradients`). After the update nothing is
/// gathered but the regions kept whole: the next forward gathers what it needs.
public final class Stage3Engine: ZeroEngine, ParameterResidency {
    public let stage = ZeroStage.parametersSharded
    public let optimizer: ShardOptimizer
    private let peers: CollectiveQueue
    private let regionParameters: RegionParameters
    private let regionGradients: RegionGradients

    init(config: ZeroConfig, table: ParameterTable, plan: PartitionPlan, optimizer: ShardOptimizer, queue: CollectiveQueue,
         ledger: MemoryLedger, initialParameters: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        self.optimizer = optimizer
        peers = queue
        let layout = RegionShards(table: table, plan: plan, rank: queue.rank)
        regionParameters = try RegionParameters(config: config, layout: layout, queue: queue, ledger: ledger)
        regionGradients = RegionGradients(layout: layout, queue: queue, ledger: ledger)
        try initialParameters(regionParameters.layout.range, regionParameters.shard.pointer)
        try regionParameters.shardUpdated()
    }

    public var queue: CollectiveQueue? { peers }
    public var residency: (any ParameterResidency)? { self }
    public var accumulatedGradients: UnsafeMutableBufferPointer<Float> { regionGradients.shard.buffer }
    public var parameterShard: UnsafeMutableBufferPointer<Float> { regionParameters.shard.buffer }
    public var gradientShard: UnsafeMutableBufferPointer<Float> { regionGradients.shard.buffer }
    public var offloadedState: [TierBuffer] { [optimizer.expAvg, optimizer.expAvgSq, regionParameters.shard] }

    public func gradientsReady(lastMicroBatch: Bool) -> ((Range<Int>) -> Void)? { nil }

    public func reduce(lossSum: Double, auxSum: Double, counts: [Double], normRegions: [Range<Int>]) throws -> StepTotals {
        try regionGradients.finish()
        return try shardedTotals(lossSum: lossSum, auxSum: auxSum, counts: counts, normRegions: normRegions)
    }

    public func parametersUpdated() throws { try regionParameters.shardUpdated() }

    public func fullParameters() throws -> FloatBuffer { try gathered(parameterShard) }

    public func loadParameters(_ fill: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        try fill(regionParameters.layout.range, regionParameters.shard.pointer)
        try regionParameters.shardUpdated()
    }

    // MARK: ParameterResidency

    public func acquire(_ region: Int, upcoming: ArraySlice<Int>) throws -> UnsafeMutablePointer<Float> {
        try regionParameters.acquire(region, upcoming: upcoming)
    }

    public func release(_ region: Int) { regionParameters.release(region) }

    public func gradients(_ region: Int) throws -> UnsafeMutablePointer<Float> { try regionGradients.buffer(for: region) }

    public func gradientsDone(_ region: Int) throws { try regionGradients.done(region) }
}
