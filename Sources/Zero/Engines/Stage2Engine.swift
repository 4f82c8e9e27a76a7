import Comm
import Model
import Tensor

/// ZeRO stage 2: as stage 1, and each rank keeps only its shard of the gradients. The model owns
/// no gradient buffer: backward writes each region's gradient into a fresh buffer that is
/// reduce-scattered as soon as backward is done with it (`RegionGradients`); after the update
/// the parameters are all-gathered.
public final class Stage2Engine: ZeroEngine, ParameterResidency {
    public let stage = ZeroStage.gradientsSharded
    public let optimizer: ShardOptimizer
    private let peers: CollectiveQueue
    private let parameters: FloatBuffer
    private let regionGradients: RegionGradients

    init(parameters: FloatBuffer, table: ParameterTable, plan: PartitionPlan, optimizer: ShardOptimizer, queue: CollectiveQueue,
         ledger: MemoryLedger) throws {
        self.parameters = parameters
        self.optimizer = optimizer
        peers = queue
        regionGradients = RegionGradients(layout: RegionShards(table: table, plan: plan, rank: queue.rank), queue: queue, ledger: ledger)
    }

    public var queue: CollectiveQueue? { peers }
    public var residency: (any ParameterResidency)? { self }
    public var accumulatedGradients: UnsafeMutableBufferPointer<Float> { regionGradients.shard.buffer }
    public var parameterShard: UnsafeMutableBufferPointer<Float> { parameters.slice(optimizer.shard.lowerBound, optimizer.shard.count) }
    public var gradientShard: UnsafeMutableBufferPointer<Float> { regionGradients.shard.buffer }
    public var offloadedState: [TierBuffer] { [optimizer.expAvg, optimizer.expAvgSq] }

    public func gradientsReady(lastMicroBatch: Bool) -> ((Range<Int>) -> Void)? { nil }

    public func reduce(lossSum: Double, auxSum: Double, counts: [Double], normRegions: [Range<Int>]) throws -> StepTotals {
        try regionGradients.finish()
        return try shardedTotals(lossSum: lossSum, auxSum: auxSum, counts: counts, normRegions: normRegions)
    }

    public func parametersUpdated() throws { try peers.allGather(parameters.buffer) }

    public func fullParameters() throws -> FloatBuffer { parameters }

    public func loadParameters(_ fill: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        try fill(0..<parameters.count, parameters.pointer)
    }

    // MARK: ParameterResidency — parameters from the model's own buffer, gradients per region.

    public func acquire(_ region: Int, upcoming: ArraySlice<Int>) throws -> UnsafeMutablePointer<Float> {
        parameters.pointer + regionGradients.layout.regions[region].lowerBound
    }

    public func release(_ region: Int) {}

    public func gradients(_ region: Int) throws -> UnsafeMutablePointer<Float> { try regionGradients.buffer(for: region) }

    public func gradientsDone(_ region: Int) throws { try regionGradients.done(region) }
}
