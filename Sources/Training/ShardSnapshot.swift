import Checkpoint
import Foundation
import Synchronization
import Tensor

/// What a rank contributes to a checkpoint besides its shard file, and what the manifest takes
/// from rank 0's: where the data order stands, the schedule, the skipped updates.
public struct ShardRecord: Codable, Sendable, Equatable {
    public var step: Int
    public var rank: Int
    public var file: CheckpointFile
    public var dataCursor: DataCursor
    public var schedule: ScheduleState
    public var skippedSteps: Int
    /// fp16: the dynamic loss scale (nil in other precisions).
    public var lossScale: LossScaleState?
    /// fp8: the amax histories, the job's (nil in other precisions).
    public var fp8Scaling: FP8ScalingState?

    public init(step: Int, rank: Int, file: CheckpointFile, dataCursor: DataCursor, schedule: ScheduleState, skippedSteps: Int,
                lossScale: LossScaleState? = nil, fp8Scaling: FP8ScalingState? = nil) {
        self.step = step
        self.rank = rank
        self.file = file
        self.dataCursor = dataCursor
        self.schedule = schedule
        self.skippedSteps = skippedSteps
        self.lossScale = lossScale
        self.fp8Scaling = fp8Scaling
    }
}

/// A rank's shard of the training state at a step boundary, copied to host memory so that a
/// background thread can write it (a checkpoint) or send it to the ring successor (a replica)
/// while training goes on: the rank's contiguous slice `start ..< start + count` of the flat
/// parameter buffer and of AdamW's two moments, back to back in one page-aligned buffer of
/// 3 · `capacity` elements (capacity ≥ count: replicas of neighbouring shards have equal sizes on the wire).
public final class ShardSnapshot: @unchecked Sendable {
    // Safe: filled once (by the trainer's thread, or by the collective that receives a replica)
    // before it is shared, then only read.
    public let step: Int
    public let rank: Int
    public let worldSize: Int
    public let start: Int
    public let count: Int
    public let capacity: Int
    public let seed: UInt64
    /// [parameters | exp_avg | exp_avg_sq | unused], `count` elements each, 3 · `capacity` in all.
    public let storage: FloatBuffer
    public let dataCursor: DataCursor
    public let schedule: ScheduleState
    public let skippedSteps: Int
    public let lossScale: LossScaleState?
    public let fp8Scaling: FP8ScalingState?
    /// Whether `storage` came from (and goes back to) the buffer pool, rather than being a view of shared memory.
    private let pooled: Bool

    /// - Parameter storage: where the snapshot lives (at least 3 · capacity elements, e.g. a view
    ///   of a shared-memory replica slot); nil: a buffer from the pool.
    public init(step: Int, rank: Int, worldSize: Int, start: Int, count: Int, capacity: Int? = nil, seed: UInt64,
         dataCursor: DataCursor, schedule: ScheduleState, skippedSteps: Int, lossScale: LossScaleState? = nil,
         fp8Scaling: FP8ScalingState? = nil, storage: FloatBuffer? = nil) {
        self.step = step
        self.rank = rank
        self.worldSize = worldSize
        self.start = start
        self.count = count
        let capacity = max(count, capacity ?? count)
        self.capacity = capacity
        self.seed = seed
        precondition(storage.map { $0.count >= 3 * capacity } ?? true, "a snapshot's storage holds 3 · capacity elements")
        self.storage = storage ?? Self.buffers.take(count: 3 * capacity)
        pooled = storage == nil
        self.dataCursor = dataCursor
        self.schedule = schedule
        self.skippedSteps = skippedSteps
        self.lossScale = lossScale
        self.fp8Scaling = fp8Scaling
    }

    /// An empty snapshot for the shard `start ..< start + count` of rank `rank` at the same step
    /// as `own` (the data cursor, schedule, skipped updates, loss scale and fp8 histories are the job's, the same on every
    /// rank), to receive a neighbour's replica into.
    public convenience init(replicaOf rank: Int, start: Int, count: Int, like own: ShardSnapshot, storage: FloatBuffer? = nil) {
        self.init(step: own.step, rank: rank, worldSize: own.worldSize, start: start, count: count, capacity: own.capacity,
                  seed: own.seed, dataCursor: own.dataCursor, schedule: own.schedule, skippedSteps: own.skippedSteps,
                  lossScale: own.lossScale, fp8Scaling: own.fp8Scaling, storage: storage)
    }

    // The three parts lie back to back, as in the shard file, so a checkpoint writes them as one
    // region (direct I/O) and a replica travels as one buffer.
    public var parameters: UnsafeMutableBufferPointer<Float> { storage.slice(0, count) }
    public var expAvg: UnsafeMutableBufferPointer<Float> { storage.slice(count, count) }
    public var expAvgSq: UnsafeMutableBufferPointer<Float> { storage.slice(2 * count, count) }

    deinit { if pooled { Self.buffers.give(storage) } }

    /// Bytes held in host memory.
    public var bytes: Int { 4 * storage.count }

    /// Snapshot buffers are recycled: a fresh multi-hundred-megabyte allocation costs its page
    /// faults and its zeroing on the training thread every time (≈ 1 s for bench-medium's shard),
    /// a recycled one only the copy. At most `idle` buffers of each size wait for reuse.
    static let buffers = BufferPool(idle: 6)

    /// Allocates (and so faults in) `buffers` snapshot buffers of `capacity` elements per part
    /// ahead of use, so that the first checkpoints and replica refreshes do not pay for it on the
    /// training thread. Run it on a background thread.
    public static func prewarm(capacity: Int, buffers n: Int) {
        let fresh = (0..<n).map { _ in FloatBuffer(count: 3 * capacity, alignment: 4096) }
        for b in fresh { buffers.give(b) }
    }

    final class BufferPool: Sendable {
        private let free = Mutex<[Int: [FloatBuffer]]>([:])
        private let idle: Int
        init(idle: Int) { self.idle = idle }

        /// A buffer of `count` elements with unspecified contents.
        func take(count: Int) -> FloatBuffer {
            free.withLock { $0[count]?.popLast() } ?? FloatBuffer(count: count, alignment: 4096)
        }

        func give(_ buffer: FloatBuffer) {
            free.withLock { f in if f[buffer.count, default: []].count < idle { f[buffer.count, default: []].append(buffer) } }
        }
    }

    /// Writes the shard file into `folder` (fsynced) and returns its record.
    public func write(into folder: URL) throws -> ShardRecord {
        let file = try ShardWriter.write(into: folder, rank: rank, worldSize: worldSize, start: start, step: step, seed: seed,
                                         parameters: UnsafeBufferPointer(parameters), expAvg: UnsafeBufferPointer(expAvg),
                                         expAvgSq: UnsafeBufferPointer(expAvgSq))
        return ShardRecord(step: step, rank: rank, file: file, dataCursor: dataCursor, schedule: schedule, skippedSteps: skippedSteps,
                           lossScale: lossScale, fp8Scaling: fp8Scaling)
    }
}
