import Comm
import Model
import Optim
import Tensor

/// ZeRO stage 0, plain data parallelism: every rank holds all parameters, gradients and AdamW
/// moments, and the gradients are averaged by ring all-reduce in buckets that start while
/// backward is still running. Alone (no queue) it is the single-process trainer.
///
/// During the step's last backward, adjacent finished ranges are merged until a bucket reaches
/// `bucketElements`, then the bucket's all-reduce is queued. Buckets are cut at the same places on
/// every rank (they depend only on the parameter table and the bucket size) and each ring
/// all-reduce is bitwise identical everywhere, so the parameters stay bitwise equal.
public final class Stage0Engine: ZeroEngine {
    public let stage = ZeroStage.replicated
    public let optimizer: ShardOptimizer
    public let queue: CollectiveQueue?
    public let bucketElements: Int
    private let parameters: FloatBuffer
    private let gradients: FloatBuffer
    /// Finished gradients not yet in a bucket, and the ticket of the last bucket queued.
    private var pending: Range<Int>?
    private var lastBucket: Int?

    init(parameters: FloatBuffer, gradients: FloatBuffer, optimizer: ShardOptimizer, queue: CollectiveQueue?, bucketElements: Int) {
        self.parameters = parameters
        self.gradients = gradients
        self.optimizer = optimizer
        self.queue = queue
        self.bucketElements = max(1, bucketElements)
    }

    public var residency: (any ParameterResidency)? { nil }
    public var accumulatedGradients: UnsafeMutableBufferPointer<Float> { gradients.buffer }
    public var parameterShard: UnsafeMutableBufferPointer<Float> { parameters.buffer }
    public var gradientShard: UnsafeMutableBufferPointer<Float> { gradients.buffer }
    public var offloadedState: [TierBuffer] { [optimizer.expAvg, optimizer.expAvgSq] }

    public func gradientsReady(lastMicroBatch: Bool) -> ((Range<Int>) -> Void)? {
        guard lastMicroBatch, queue != nil else { return nil }
        return { [self] range in ready(range) }
    }

    private func ready(_ range: Range<Int>) {
        guard worldSize > 1, !range.isEmpty else { return }
        if let p = pending, p.lowerBound == range.upperBound {
            pending = range.lowerBound..<p.upperBound
        } else if let p = pending, p.upperBound == range.lowerBound {
            pending = p.lowerBound..<range.upperBound
        } else {
            if let p = pending { allReduce(p) }
            pending = range
        }
        if let p = pending, p.count >= bucketElements {
            allReduce(p)
            pending = nil
        }
    }

    private func allReduce(_ range: Range<Int>) {
        guard let queue else { return }
        let timeout = queue.timeout, wire = queue.gradientWire
        // Safe: backward is done with these gradients, and nothing reads them before `reduce` waits for the last bucket.
        nonisolated(unsafe) let bucket = gradients.slice(range.lowerBound, range.count)
        lastBucket = queue.submit { group in try group.allReduce(bucket, op: .average, wire: wire, deadline: .now + timeout) }
    }

    /// Every rank holds all the averaged gradients: their norms are taken locally; the loss terms
    /// and counts are summed across ranks.
    public func reduce(lossSum: Double, auxSum: Double, counts: [Double], normRegions: [Range<Int>]) throws -> StepTotals {
        let norm = { GradientClipping.sumOfSquares(self.gradients.buffer, pool: self.optimizer.pool).squareRoot() }
        let regionNorms = { self.regionSquares(normRegions).map { $0.squareRoot() } }
        guard let queue else {
            return StepTotals(lossSum: lossSum, auxSum: auxSum, gradNorm: norm(), counts: counts, regionNorms: regionNorms())
        }
        if worldSize > 1 {
            if let p = pending { allReduce(p); pending = nil }
            if let ticket = lastBucket { try queue.wait(ticket); lastBucket = nil }
        }
        let totals = try queue.allReduceScalars([lossSum, auxSum, 0] + counts)
        let n = Double(worldSize)
        return StepTotals(lossSum: totals[0] / n, auxSum: totals[1] / n, gradNorm: norm(), counts: Array(totals[3...]),
                          regionNorms: regionNorms())
    }

    public func parametersUpdated() throws {}

    public func fullParameters() throws -> FloatBuffer { parameters }

    public func loadParameters(_ fill: (Range<Int>, UnsafeMutablePointer<Float>) throws -> Void) throws {
        try fill(0..<parameters.count, parameters.pointer)
    }
}
