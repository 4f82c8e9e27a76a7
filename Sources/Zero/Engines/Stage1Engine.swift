import Comm
import Model
import Tensor

/// ZeRO stage 1: the AdamW moments are sharded. Each rank holds all parameters and gradients;
/// after backward the gradient buffer is reduce-scattered (averaged), each rank clips and updates
/// its shard with its shard of the moments, and the parameters are all-gathered.
public final class Stage1Engine: ZeroEngine {
    public let stage = ZeroStage.optimizerSharded
    public let optimizer: ShardOptimizer
    private let peers: CollectiveQueue
    private let parameters: FloatBuffer
    private let gradients: FloatBuffer

    init(parameters: FloatBuffer, gradients: FloatBuffer, optimizer: ShardOptimizer, queue: CollectiveQueue) {
        self.parameters = parameters
        self.gradients = gradients
        self.optimizer = optimizer
        peers = queue
    }

    public var queue: CollectiveQueue? { peers }
    public var residency: (any ParameterResidency)? { nil }
    public var accumulatedGradients: UnsafeMutableBufferPointer<Float> { gradients.buffer }
    public var parameterShard: UnsafeMutableBufferPointer<Float> { parameters.slice(optimizer.shard.lowerBound, optimizer.shard.count) }
    public var gradientShard: UnsafeMutableBufferPointer<Float> { gradients.slice(optimizer.shard.lowerBound, optimizer.shard.count) }
    public var offloadedState: [TierBuffer] { [optimizer.expAvg, optimizer.expAvgSq] }

    public func gradientsReady(lastMicroBatch: Bool) -> ((Range<Int>) -> Void)? { nil }

    public func reduce(lossSum: Double, auxSum: Double, counts: [Double], normRegions: [Range<Int>]) throws -> StepTotals {
        if worldSize > 1 {
            let timeout = peers.timeout, wire = peers.gradientWire
            // Safe: the training thread waits for this reduce-scatter right here.
            nonisolated(unsafe) let all = gradients.buffer
            try peers.wait(peers.submit { group in _ = try group.reduceScatter(all, op: .average, wire: wire, deadline: .now + timeout) })
        }
        return try shardedTotals(lossSum: lossSum, auxSum: auxSum, counts: counts, normRegions: normRegions)
    }

    public func parametersUpdated() throws { try peers.allGather(parameters.buffer) }

    public func fullParameters() throws -> FloatBuffer { parameters }

    public func loadParameters(_ fill: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        try fill(0..<parameters.count, parameters.pointer)
    }
}
