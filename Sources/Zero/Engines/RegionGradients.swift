import Comm
import Model
import Tensor

/// Stages 2–3: gradients reduced region by region while backward runs, each rank keeping only its
/// shard.
///
/// Backward writes a region's gradient of a micro-batch into a fresh buffer (`buffer(for:)`);
/// when backward is done with the region (`done`) the buffer is reduce-scattered — a ragged ring
/// reduce-scatter cut where the global shards cut the region — the rank adds its piece to `shard`
/// (averaged over ranks, summed over micro-batches) and the buffer is freed. At most
/// `maxInFlight` reductions are queued; backward waits for the oldest beyond that. Used from the
/// training thread only.
final class RegionGradients {
    let layout: RegionShards
    /// Reduced gradients of `layout.range`, summed over the step's micro-batches.
    let shard: FloatBuffer
    private let queue: CollectiveQueue
    private let ledger: MemoryLedger
    private let maxInFlight = 1
    private var buffers: [Int: FloatBuffer] = [:]
    private var inFlight: [Int] = []
    private var last: Int?

    init(layout: RegionShards, queue: CollectiveQueue, ledger: MemoryLedger) {
        self.layout = layout
        shard = FloatBuffer(count: layout.range.count)
        self.queue = queue
        self.ledger = ledger
    }

    /// Where backward adds region `r`'s gradient of this micro-batch (zeroed).
    func buffer(for r: Int) throws -> UnsafeMutablePointer<Float> {
        if let buffer = buffers[r] { return buffer.pointer }
        let count = layout.regions[r].count
        try ledger.allocate(4 * count, .comm, what: "the gradient bucket of region \(r)",
                            advice: "ZeRO frees each bucket once it is reduce-scattered; a smaller model region (fewer parameters per layer) needs less")
        let buffer = FloatBuffer(count: count)
        buffers[r] = buffer
        return buffer.pointer
    }

    /// Backward is done with region `r` in this micro-batch: queues its reduction.
    func done(_ r: Int) throws {
        guard let buffer = buffers.removeValue(forKey: r) else { return }
        let chunks = layout.chunks(r), own = layout.ownPart(r), timeout = queue.timeout, ledger = ledger, wire = queue.gradientWire
        let offsetInRegion = own.lowerBound - layout.regions[r].lowerBound
        // Safe: only queued jobs (one at a time, in order) write `shard` until `finish` waits for the last.
        nonisolated(unsafe) let destination = shard.pointer + (own.lowerBound - layout.range.lowerBound)
        let ticket = queue.submit { group in
            try group.reduceScatter(buffer.buffer, chunks: chunks, op: .average, wire: wire, deadline: .now + timeout)
            Kernels.add(buffer.pointer + offsetInRegion, into: destination, count: own.count)
            ledger.release(4 * buffer.count, .comm)
        }
        last = ticket
        inFlight.append(ticket)
        if inFlight.count > maxInFlight { try queue.wait(inFlight.removeFirst()) }
    }

    /// Waits until every queued reduction has landed in `shard`.
    func finish() throws {
        if let last { try queue.wait(last) }
        last = nil
        inFlight.removeAll()
    }
}
