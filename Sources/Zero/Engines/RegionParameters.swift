import Comm
import Foundation
import Model
import Tensor

/// Stage 3: the rank keeps only its shard of the parameters (`shard`, in the device, host or disk
/// tier); a region is all-gathered into a fresh buffer just before the model uses it and freed
/// when the model releases it.
///
/// The next `prefetchDepth` regions of the planned order are gathered ahead on the communication
/// thread while the current one computes, as long as the gathered elements stay within
/// `maxLiveParameters`. Regions of at most `zero.param_persistence_threshold` elements stay whole
/// on every rank (gathered once after each update instead of twice per micro-batch). Every decision depends
/// only on the order of the model's calls, never on timing, so all ranks queue the same
/// collectives in the same order. Used from the training thread only.
final class RegionParameters {
    let layout: RegionShards
    /// The parameters of `layout.range`.
    let shard: TierBuffer
    private let queue: CollectiveQueue
    private let ledger: MemoryLedger
    private let prefetchDepth: Int
    private let maxLiveParameters: Int

    private struct Gathered { let buffer: FloatBuffer; let ticket: Int }
    private var gathered: [Int: Gathered] = [:]
    private var persistent: [Int: FloatBuffer] = [:]
    private var liveElements = 0

    /// `name` names the shard's offload file (`<name>-rank<r>`).
    init(config: ZeroConfig, layout: RegionShards, queue: CollectiveQueue, ledger: MemoryLedger, name: String = "params") throws {
        self.layout = layout
        self.queue = queue
        self.ledger = ledger
        prefetchDepth = config.prefetchDepth
        maxLiveParameters = config.maxLiveParameters
        shard = try TierBuffer(count: layout.range.count, tier: config.parameterTier, directory: config.offloadDirectory,
                               name: "\(name)-rank\(queue.rank)")
        for (r, region) in layout.regions.enumerated() where region.count <= config.paramPersistenceThreshold {
            try ledger.allocate(4 * region.count, .params, what: "the persistent parameters of region \(r)")
            persistent[r] = FloatBuffer(count: region.count)
        }
    }

    /// Places this rank's part of region `r` from `shard` into `whole` (the region's full buffer)
    /// and queues the all-gather that fills in the other ranks' parts; returns its ticket.
    private func queueGather(_ r: Int, into whole: FloatBuffer) -> Int {
        let region = layout.regions[r], own = layout.ownPart(r)
        (whole.pointer + (own.lowerBound - region.lowerBound)).update(from: shard.pointer + (own.lowerBound - layout.range.lowerBound),
                                                                      count: own.count)
        let chunks = layout.chunks(r), timeout = queue.timeout
        return queue.submit { group in try group.allGather(whole.buffer, chunks: chunks, deadline: .now + timeout) }
    }

    /// Region `region`'s parameters, gathered (and the next ones of `upcoming` queued).
    func acquire(_ region: Int, upcoming: ArraySlice<Int>) throws -> UnsafeMutablePointer<Float> {
        if let whole = persistent[region] { return whole.pointer }
        if gathered[region] == nil { try startGather(region) }
        for next in upcoming.prefix(prefetchDepth) where persistent[next] == nil && gathered[next] == nil {
            guard liveElements + layout.regions[next].count <= maxLiveParameters else { break }
            try startGather(next)
        }
        let g = gathered[region]!
        try queue.wait(g.ticket)
        return g.buffer.pointer
    }

    func release(_ region: Int) {
        guard persistent[region] == nil, let g = gathered.removeValue(forKey: region) else { return }
        // The gather finished before the model could use it, so the buffer is free.
        liveElements -= g.buffer.count
        ledger.release(4 * g.buffer.count, .gathered)
    }

    private func startGather(_ r: Int) throws {
        let region = layout.regions[r]
        try ledger.allocate(4 * region.count, .gathered, what: "the gathered parameters of region \(r)",
                            advice: "lower zero.prefetch_depth or zero.max_live_parameters")
        let buffer = FloatBuffer(count: region.count)
        liveElements += region.count
        gathered[r] = Gathered(buffer: buffer, ticket: queueGather(r, into: buffer))
    }

    /// After the optimizer updated `shard` (and once before the first step): refreshes the
    /// regions kept whole. A collective: every rank calls it.
    func shardUpdated() throws {
        var last: Int?
        for (r, whole) in persistent.sorted(by: { $0.key < $1.key }) { last = queueGather(r, into: whole) }
        if let last { try queue.wait(last) }
    }
}
