import Comm

/// How a rank's training loop exchanges gradients and scalars with the other ranks.
///
/// The trainer calls `gradientsReady` during the last micro-batch's backward, each time a
/// contiguous range of the flat gradient buffer is final (the LM head first, then each block from
/// the last to the first, then the embedding), `finishGradients` when backward is done, and then
/// reads averaged gradients from its buffer. The implementation decides how to overlap.
public protocol GradientSync: AnyObject {
    var rank: Int { get }
    var worldSize: Int { get }
    /// Elements `range` of the gradient buffer will not change any more in this step.
    func gradientsReady(_ range: Range<Int>)
    /// Blocks until every gradient is averaged across ranks; rethrows a communication failure.
    func finishGradients() throws
    /// Element-wise sum of small values across ranks (bitwise identical on every rank).
    func allReduceScalars(_ values: [Double]) throws -> [Double]
    /// The slice of a `count`-element flat buffer this rank owns (ZeRO shard).
    func shardRange(count: Int) -> Range<Int>
    /// Stage 2: averages the whole gradient buffer across ranks, leaving only this rank's shard
    /// (`shardRange`) valid. Returns the shard range.
    func reduceScatterGradients() throws -> Range<Int>
    /// In place: every rank's shard of `buffer` (at `shardRange`) is copied to every rank.
    func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Queues a collective on the communication thread, behind everything queued before; returns
    /// a ticket for `wait`. Every rank must queue the same collectives in the same order.
    func submit(_ body: @escaping (ProcessGroup) throws -> Void) -> Int
    /// Blocks until the job of `ticket` and all before it have run; rethrows a failure.
    func wait(_ ticket: Int) throws
}
