import Comm
import Foundation
import Model
import Tensor

/// ZeRO stages 2 and 3 for one rank: where the model finds each region's parameters and gradients.
///
/// Stage 2 and 3 — gradients. Backward writes each region's gradient of a micro-batch into a
/// fresh buffer; when backward is done with the region, the buffer is reduce-scattered (ragged:
/// cut where the global shards cut the region), the rank adds its piece to `gradientShard`
/// (averaged over ranks, summed over micro-batches) and the buffer is freed. At most
/// `maxGradientBuckets` of them are in flight; backward waits for the oldest beyond that.
///
/// Stage 3 — parameters. The rank keeps only `parameterShard` (device, host or disk tier). Before
/// a region is used it is all-gathered into a fresh buffer, which is freed when the model releases
/// it; the next `prefetchDepth` regions of the planned order are gathered ahead on the
/// communication thread while the current one computes, as long as the gathered elements stay
/// within `maxLiveParameters`. Regions of at most `persistenceThreshold` elements stay whole on
/// every rank (gathered once after each update instead of twice per micro-batch).
///
/// Every decision depends only on the order of the model's calls, never on timing, so all ranks
/// queue the same collectives in the same order.
public final class ShardedResidency: ParameterResidency, @unchecked Sendable {
    public struct Options: Sendable {
        public var stage: Int
        public var prefetchDepth = 1
        public var maxLiveParameters = Int.max
        public var persistenceThreshold = 0
        public var maxGradientBuckets = 1
        /// Where the stage-3 parameter shard lives.
        public var parameterTier: MemoryTier = .device
        public var offloadDirectory: URL?
        public init(stage: Int) { self.stage = stage }
    }

    public let options: Options
    public let regions: [Range<Int>]
    /// This rank's slice of the flat buffer, and every rank's.
    public let shard: Range<Int>
    private let shards: [Range<Int>]
    /// Reduced gradients of `shard`, summed over the step's micro-batches (zero it between steps).
    public let gradientShard: FloatBuffer
    /// Stage 3: the parameters of `shard` (nil at stage 2, where the model holds all parameters).
    public let parameterShard: TierBuffer?
    /// Stage 2: the model's own full parameter buffer.
    private let modelParameters: FloatBuffer?
    private let comm: any GradientSync
    private let ledger: MemoryLedger
    private let timeout: Duration

    private struct Gathered { let buffer: FloatBuffer; let ticket: Int }
    private var gathered: [Int: Gathered] = [:]
    private var persistent: [Int: FloatBuffer] = [:]
    private var liveElements = 0
    private var gradientBuffers: [Int: FloatBuffer] = [:]
    private var inFlight: [Int] = []
    private var lastTicket = 0

    /// - Parameters:
    ///   - modelParameters: the model's full parameter buffer at stage 2; nil at stage 3.
    public init(options: Options, table: ParameterTable, plan: PartitionPlan, comm: any GradientSync, ledger: MemoryLedger,
                modelParameters: FloatBuffer?, timeout: Duration) throws {
        precondition(options.stage >= 2, "ShardedResidency is ZeRO stage 2 or 3")
        self.options = options
        self.regions = table.regions
        self.comm = comm
        self.ledger = ledger
        self.timeout = timeout
        shards = (0..<plan.worldSize).map(plan.shardRange)
        shard = shards[comm.rank]
        gradientShard = FloatBuffer(count: shard.count)
        if options.stage >= 3 {
            parameterShard = try TierBuffer(count: shard.count, tier: options.parameterTier,
                                            directory: options.offloadDirectory, name: "params-rank\(comm.rank)")
            self.modelParameters = nil
            for (r, range) in regions.enumerated() where range.count <= options.persistenceThreshold {
                try ledger.allocate(4 * range.count, .params, what: "the persistent parameters of region \(r)")
                persistent[r] = FloatBuffer(count: range.count)
            }
        } else {
            parameterShard = nil
            self.modelParameters = modelParameters
        }
    }

    /// The pieces of region `r` each rank owns.
    private func chunks(_ r: Int) -> [Int] { shards.map { regions[r].clamped(to: $0).count } }

    /// This rank's part of region `r`, in flat-buffer coordinates.
    private func ownPart(_ r: Int) -> Range<Int> { regions[r].clamped(to: shard) }

    /// Places this rank's part of region `r` from `parameterShard` into `whole` (the region's full
    /// buffer) and queues the all-gather that fills in the other ranks' parts; returns its ticket.
    private func queueGather(_ r: Int, into whole: FloatBuffer, from source: TierBuffer) -> Int {
        let region = regions[r], own = ownPart(r)
        (whole.pointer + (own.lowerBound - region.lowerBound)).update(from: source.pointer + (own.lowerBound - shard.lowerBound),
                                                                      count: own.count)
        let chunks = chunks(r), timeout = timeout
        nonisolated(unsafe) let target = whole.buffer
        lastTicket = comm.submit { group in try group.allGather(target, chunks: chunks, deadline: .now + timeout) }
        return lastTicket
    }

    // MARK: parameters (stage 3)

    public func acquire(_ region: Int, upcoming: ArraySlice<Int>) throws -> UnsafeMutablePointer<Float> {
        guard let parameterShard else { return modelParameters!.pointer + regions[region].lowerBound }
        if let whole = persistent[region] { return whole.pointer }
        if gathered[region] == nil { try startGather(region, shard: parameterShard) }
        for next in upcoming.prefix(options.prefetchDepth)
        where persistent[next] == nil && gathered[next] == nil {
            guard liveElements + regions[next].count <= options.maxLiveParameters else { break }
            try startGather(next, shard: parameterShard)
        }
        let g = gathered[region]!
        try comm.wait(g.ticket)
        return g.buffer.pointer
    }

    public func release(_ region: Int) {
        guard parameterShard != nil, persistent[region] == nil, let g = gathered.removeValue(forKey: region) else { return }
        // The gather finished before the model could use it, so the buffer is free.
        liveElements -= g.buffer.count
        ledger.release(4 * g.buffer.count, .gathered)
    }

    private func startGather(_ r: Int, shard source: TierBuffer) throws {
        let region = regions[r]
        try ledger.allocate(4 * region.count, .gathered, what: "the gathered parameters of region \(r)",
                            advice: "lower zero.prefetch_depth or zero.max_live_parameters")
        let buffer = FloatBuffer(count: region.count)
        liveElements += region.count
        gathered[r] = Gathered(buffer: buffer, ticket: queueGather(r, into: buffer, from: source))
    }

    /// After the optimizer updated `parameterShard`: refreshes the regions kept whole (stage 3).
    /// Also call it once before the first step. A collective: every rank calls it.
    public func parametersUpdated() throws {
        guard let parameterShard else { return }
        for r in persistent.keys.sorted() { _ = queueGather(r, into: persistent[r]!, from: parameterShard) }
        try comm.wait(lastTicket)
    }

    // MARK: gradients (stages 2 and 3)

    public func gradients(_ region: Int) throws -> UnsafeMutablePointer<Float> {
        if let buffer = gradientBuffers[region] { return buffer.pointer }
        let count = regions[region].count
        try ledger.allocate(4 * count, .comm, what: "the gradient bucket of region \(region)",
                            advice: "ZeRO frees each bucket once it is reduce-scattered; a smaller model region (fewer parameters per layer) needs less")
        let buffer = FloatBuffer(count: count)
        gradientBuffers[region] = buffer
        return buffer.pointer
    }

    public func gradientsDone(_ region: Int) throws {
        guard let buffer = gradientBuffers.removeValue(forKey: region) else { return }
        let chunks = chunks(region), own = ownPart(region), timeout = timeout, ledger = ledger
        let offsetInRegion = own.lowerBound - regions[region].lowerBound
        let destination = gradientShard.pointer + (own.lowerBound - shard.lowerBound)
        nonisolated(unsafe) let target = buffer.buffer
        nonisolated(unsafe) let dst = destination
        let ticket = comm.submit { group in
            try group.reduceScatter(target, chunks: chunks, op: .average, deadline: .now + timeout)
            Kernels.add(target.baseAddress! + offsetInRegion, into: dst, count: own.count)
            withExtendedLifetime(buffer) {}
            ledger.release(4 * buffer.count, .comm)
        }
        lastTicket = ticket
        inFlight.append(ticket)
        if inFlight.count > options.maxGradientBuckets { try comm.wait(inFlight.removeFirst()) }
    }

    /// Waits until every queued reduce-scatter has landed in `gradientShard`.
    public func finishGradients() throws {
        try comm.wait(lastTicket)
        inFlight.removeAll()
    }
}
