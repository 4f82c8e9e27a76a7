import Common
import Foundation

/// The ranks of one membership epoch, and the ring collectives they run together.
///
/// Every rank of the group creates one `ProcessGroup` with the same `worldSize`, `epoch` and
/// `jobID` and calls the same collectives in the same order (from one thread: the transport's
/// sockets are not thread-safe). Each call carries a sequence number; frames of older epochs or
/// older sequences are dropped, frames that do not fit the schedule are errors.
///
/// Results are bitwise identical on every rank and from run to run: chunk `c` is always summed in
/// the ring order `x[c+1] + x[c+2] + ... + x[c]` (ranks mod N, left to right), finished once by its
/// owner (rank c), and copied to everybody else. `allReduceScalars` sums in rank order 0..<N.
///
/// Failure: every call takes a deadline. When a peer dies or goes silent, the call throws a
/// `CommError` naming the operation, its sequence number and the rank waited for (or blamed); the
/// rank also sends an abort frame down the ring so later ranks fail fast with the same blame, and
/// dumps its flight recorder to the log (and to `options.forensicsDirectory`, `FlightDump`). A failed group stays failed (`.groupFailed`): form a new
/// one with a higher epoch and the surviving ranks.
public final class ProcessGroup {
    public enum ReduceOp: String, Sendable, CaseIterable {
        case sum
        /// Sum divided by `worldSize` (once, by the owner of each chunk).
        case average
    }

    /// Element format on the wire for fp32 collectives.
    public enum WireFormat: String, Sendable, CaseIterable {
        case float32
        /// Half the bytes; partial sums are rounded to bf16 before each hop and the final result is
        /// rounded to bf16 precision on every rank. For gradients only.
        case bfloat16
    }

    public struct Options: Sendable {
        /// Largest payload of one frame, in bytes: large enough to amortise per-message cost,
        /// small enough that a chunk pipelines through the ring (gloo uses the same 1 MiB).
        public var segmentBytes: Int = 1 << 20
        /// Put a CRC-32C of every payload in its header and check it on receipt. The header is
        /// always checksummed. With SSE4.2 the sender's CRC runs at ≈ 24 GB/s and the receiver's is
        /// folded into the pass that reduces or copies the payload (software CRC elsewhere, ≈ 4 GB/s).
        public var checksumPayloads: Bool = true
        /// Collectives kept in the flight recorder.
        public var flightRecorderCapacity: Int = 64
        /// Where failures and dropped frames are reported.
        public var log: CommLog = standardErrorCommLog
        /// Where a failed collective writes this rank's flight recorder (`rank-<r>.json`, a
        /// `FlightDump`); nil = the log only.
        public var forensicsDirectory: URL?

        public init() {}
    }

    public let rank: Int
    public let worldSize: Int
    public let epoch: UInt64
    public let jobID: UInt64
    public let options: Options
    public let recorder: FlightRecorder
    let transport: any Transport

    /// Sequence number the next collective will use.
    public private(set) var sequence: UInt64 = 0
    /// Frames dropped because they belonged to an older epoch, an older (aborted) collective or another job.
    public private(set) var droppedFrames = 0
    /// The error that failed this group, if any.
    public private(set) var failure: CommError?
    /// Ledgers of the running collective's borrowed sends (to reclaim the buffer if it fails).
    private var activeLedgers: [SendLedger] = []

    public var predecessor: Int { (rank - 1 + worldSize) % worldSize }
    public var successor: Int { (rank + 1) % worldSize }

    /// - Parameters:
    ///   - rank: this rank, `0..<worldSize`.
    ///   - transport: links to `successor` and from `predecessor`; the group does not close it.
    ///   - epoch: membership epoch; increase it every time the group is re-formed.
    public init(rank: Int, worldSize: Int, transport: any Transport, epoch: UInt64, jobID: UInt64,
                options: Options = Options()) throws {
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw CommError(.invalidArgument, "rank \(rank) is not in 0..<\(worldSize)")
        }
        guard options.segmentBytes >= 8, options.segmentBytes <= FrameHeader.maxPayloadBytes else {
            throw CommError(.invalidArgument, "segmentBytes must be in 8...\(FrameHeader.maxPayloadBytes), got \(options.segmentBytes)")
        }
        self.rank = rank
        self.worldSize = worldSize
        self.transport = transport
        self.epoch = epoch
        self.jobID = jobID
        self.options = options
        self.recorder = FlightRecorder(capacity: options.flightRecorderCapacity)
    }

    /// The slice of a `count`-element buffer that `rank` owns after `reduceScatter`.
    public func shardRange(count: Int, rank: Int) -> Range<Int> {
        RingLayout.shardRange(count: count, rank: rank, worldSize: worldSize)
    }

    // MARK: - Collectives

    /// In place: every rank ends with the element-wise sum (or average) of all ranks' `buffer`.
    /// Reduce-scatter then all-gather around the ring, pipelined in `segmentBytes` segments.
    /// Every rank must pass the same element count.
    public func allReduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp = .sum,
                          wire: WireFormat = .float32, deadline: ContinuousClock.Instant) throws {
        try collective(.allReduce, bytes: buffer.count * 4) { seq in
            try ring(buffer, layout: try raggedLayout(buffer.count, evenChunks(buffer.count)), hops: 0..<(2 * (worldSize - 1)),
                     operation: .allReduce, sequence: seq, op: op, wire: wire, deadline: deadline)
        }
    }

    /// In place: afterwards `buffer[shardRange(count:rank:)]` on each rank holds the reduced values
    /// of its shard; the rest of `buffer` holds partial sums (unspecified). Returns the shard range.
    @discardableResult
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp = .sum,
                              wire: WireFormat = .float32, deadline: ContinuousClock.Instant) throws -> Range<Int> {
        try reduceScatter(buffer, chunks: evenChunks(buffer.count), op: op, wire: wire, deadline: deadline)
    }

    /// As `reduceScatter`, with the chunk boundaries given: rank c owns the `chunks[c]` elements
    /// after those of ranks 0..<c (any chunk may be empty). `chunks` has `worldSize` entries that sum
    /// to `buffer.count`, the same on every rank. Returns this rank's chunk.
    @discardableResult
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, chunks: [Int], op: ReduceOp = .sum,
                              wire: WireFormat = .float32, deadline: ContinuousClock.Instant) throws -> Range<Int> {
        let layout = try raggedLayout(buffer.count, chunks)
        try collective(.reduceScatter, bytes: buffer.count * 4) { seq in
            try ring(buffer, layout: layout, hops: 0..<(worldSize - 1), operation: .reduceScatter, sequence: seq,
                     op: op, wire: wire, deadline: deadline)
        }
        return layout.chunkRange(rank)
    }

    /// In place: each rank contributes `buffer[shardRange(count:rank:)]`; afterwards every rank's
    /// `buffer` holds all shards.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>, wire: WireFormat = .float32,
                          deadline: ContinuousClock.Instant) throws {
        try allGather(buffer, chunks: evenChunks(buffer.count), wire: wire, deadline: deadline)
    }

    /// As `allGather`, with the chunk boundaries given as for `reduceScatter(_:chunks:…)`.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>, chunks: [Int], wire: WireFormat = .float32,
                          deadline: ContinuousClock.Instant) throws {
        let layout = try raggedLayout(buffer.count, chunks)
        try collective(.allGather, bytes: buffer.count * 4) { seq in
            try ring(buffer, layout: layout, hops: (worldSize - 1)..<(2 * (worldSize - 1)), operation: .allGather,
                     sequence: seq, op: .sum, wire: wire, deadline: deadline)
        }
    }

    private func evenChunks(_ count: Int) -> [Int] {
        (0..<worldSize).map { RingLayout.shardRange(count: count, rank: $0, worldSize: worldSize).count }
    }

    private func raggedLayout(_ count: Int, _ chunks: [Int]) throws -> RingLayout {
        guard chunks.count == worldSize, chunks.allSatisfy({ $0 >= 0 }), chunks.reduce(0, +) == count else {
            throw CommError(.invalidArgument, "chunks \(chunks.count <= 8 ? "\(chunks)" : "(\(chunks.count) entries)") must be \(worldSize) sizes ≥ 0 summing to the buffer's \(count) elements")
        }
        let largest = chunks.max() ?? 0
        return RingLayout(chunks: chunks, segmentElements: segmentElements(forChunk: largest))
    }

    /// In place: every rank's `buffer` becomes `root`'s. A pipelined chain root → root+1 → … → root−1.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int,
                          deadline: ContinuousClock.Instant) throws {
        guard (0..<worldSize).contains(root) else {
            throw CommError(.invalidArgument, "broadcast root \(root) is not in 0..<\(worldSize)")
        }
        try collective(.broadcast, bytes: buffer.count * 4) { seq in
            try chainBroadcast(buffer, root: root, sequence: seq, deadline: deadline)
        }
    }

    /// Returns once every rank of the group has entered the barrier.
    public func barrier(deadline: ContinuousClock.Instant) throws {
        try collective(.barrier, bytes: 0) { seq in
            _ = try gatherScalars([], operation: .barrier, sequence: seq, deadline: deadline)
        }
    }

    /// All-reduce of a few Doubles (grad-norm², non-finite flags, loss), tuned for latency: each
    /// rank's vector circulates once (N−1 small hops) and every rank sums the N vectors locally in
    /// rank order, so the result is bitwise identical everywhere. Every rank passes the same count.
    public func allReduceScalars(_ values: [Double], op: ReduceOp = .sum,
                                 deadline: ContinuousClock.Instant) throws -> [Double] {
        try collective(.scalars, bytes: values.count * 8) { seq in
            let table = try gatherScalars(values, operation: .scalars, sequence: seq, deadline: deadline)
            var result = [Double](repeating: 0, count: values.count)
            for j in 0..<values.count {
                var acc = table[0][j]
                for q in 1..<worldSize { acc += table[q][j] }
                result[j] = op == .average ? acc / Double(worldSize) : acc
            }
            return result
        }
    }

    /// Element-wise maximum of a few Doubles across ranks (fp8's amaxes), circulated as
    /// `allReduceScalars` circulates its vectors; the maximum is exact and order-free, so the
    /// result is bitwise identical everywhere. Every rank passes the same count.
    public func allReduceMaxScalars(_ values: [Double], deadline: ContinuousClock.Instant) throws -> [Double] {
        try collective(.scalars, bytes: values.count * 8) { seq in
            let table = try gatherScalars(values, operation: .scalars, sequence: seq, deadline: deadline)
            return (0..<values.count).map { j in table.reduce(-Double.infinity) { Swift.max($0, $1[j]) } }
        }
    }

    /// Point-to-point ring exchange: sends `send` to the successor (zero-copy, in `segmentBytes`
    /// segments) while receiving `receive.count` bytes from the predecessor, which sends that many
    /// (the two sizes differ where a rank's two links carry different things: a same-host replica
    /// sends only a notice). The transport's ceiling for what a ring collective can move; used by
    /// `zerotrain bench comm`.
    public func exchange(send: UnsafeRawBufferPointer, receive: UnsafeMutableRawBufferPointer,
                         checksum: Bool = false, deadline: ContinuousClock.Instant) throws {
        guard worldSize > 1 || send.count == receive.count else {
            throw CommError(.invalidArgument, "a one-rank exchange needs equal send (\(send.count)) and receive (\(receive.count)) sizes")
        }
        try collective(.exchange, bytes: send.count) { seq in
            guard worldSize > 1 else {
                if send.count > 0 { receive.baseAddress!.copyMemory(from: send.baseAddress!, byteCount: send.count) }
                return
            }
            let seg = options.segmentBytes
            let ledger = newLedger()
            for k in 0..<max(1, (send.count + seg - 1) / seg) {
                let lo = min(k * seg, send.count), hi = min(lo + seg, send.count)
                let payload = UnsafeRawBufferPointer(rebasing: send[lo..<hi])
                var header = dataHeader(.exchange, .bytes, sequence: seq, hop: 0, chunk: 0, segment: k)
                header.seal(payload: payload, checksum: checksum)
                try transport.send(header: header, payload: payload, release: ledger.makeRelease(), deadline: deadline)
            }
            for k in 0..<max(1, (receive.count + seg - 1) / seg) {
                let lo = min(k * seg, receive.count), hi = min(lo + seg, receive.count)
                try receiveData(.exchange, .bytes, sequence: seq, hop: 0, chunk: 0, segment: k,
                                byteCount: hi - lo, deadline: deadline) { payload in
                    if hi > lo { (receive.baseAddress! + lo).copyMemory(from: payload.baseAddress!, byteCount: hi - lo) }
                }
            }
            try waitAll(ledger, deadline: deadline)
        }
    }

    // MARK: - Bookkeeping around every collective

    private func collective<R>(_ operation: FrameHeader.Operation, bytes: Int, _ body: (UInt64) throws -> R) throws -> R {
        let name = Self.name(of: operation)
        if let failure {
            throw CommError(.groupFailed, "this group (epoch \(epoch)) failed earlier; form a new group with a higher epoch",
                            operation: name, sequence: sequence, epoch: epoch, peer: failure.peer,
                            cause: failure)
        }
        let seq = sequence
        sequence += 1
        activeLedgers.removeAll()
        let handle = recorder.begin(FlightRecord(operation: name, epoch: epoch, sequence: seq, bytes: bytes,
                                                 receivesFrom: predecessor, sendsTo: successor,
                                                 start: .now, duration: nil, outcome: "running"))
        do {
            let result = try body(seq)
            recorder.finish(handle, outcome: "ok")
            return result
        } catch {
            var failure = (error as? CommError) ?? CommError(.transport, "\(error)")
            failure.operation = name
            failure.sequence = seq
            failure.epoch = epoch
            if failure.peer == nil { failure.peer = predecessor }
            self.failure = failure
            recorder.finish(handle, outcome: failure.code.rawValue)
            spreadAbort(failure, sequence: seq, operation: operation)
            reclaimBorrowedBuffers()
            options.log("zerotrain comm: rank \(rank) failed: \(failure)\n\(recorder.dump(rank: rank))")
            writeForensics(failure)
            throw failure
        }
    }

    /// Writes the flight recorder to the forensics directory, once: a failed group runs nothing
    /// more. An I/O error is logged, never thrown, so the collective's own error surfaces.
    private func writeForensics(_ failure: CommError) {
        guard let directory = options.forensicsDirectory else { return }
        let line = "\(failure)".split(whereSeparator: \.isNewline).joined(separator: " ")
        let dump = FlightDump(rank: rank, worldSize: worldSize, epoch: epoch, jobID: jobID, error: line,
                              writtenAt: Date().timeIntervalSince1970, records: recorder.records.map(FlightDump.Record.init))
        do {
            try dump.write(in: directory)
        } catch {
            options.log("zerotrain comm: rank \(rank): cannot write the flight recorder to \(directory.path): \(error)")
        }
    }

    /// Tells the successor that this collective is dead and whom to blame, so it fails now rather
    /// than at its deadline. Not sent to the blamed rank itself.
    private func spreadAbort(_ failure: CommError, sequence: UInt64, operation: FrameHeader.Operation) {
        guard worldSize > 1 else { return }
        let blamed = failure.peer ?? predecessor
        guard blamed != successor, failure.code != .invalidArgument else { return }
        let reason = Array("rank \(rank): \(failure.message)".utf8.prefix(512))
        var header = FrameHeader(kind: .abort, elementType: .bytes, operation: operation, jobID: jobID,
                                 epoch: epoch, sequence: sequence, sourceRank: UInt32(rank), chunk: UInt32(blamed))
        reason.withUnsafeBytes { header.seal(payload: $0, checksum: true) }
        transport.trySend(header: header, payload: reason)
    }

    /// A failed collective must not return while the transport may still read the caller's buffer
    /// (zero-copy sends queued for a peer that stopped reading): give queued frames (and the abort)
    /// a moment to go out, then discard what is left and wait for the releases.
    private func reclaimBorrowedBuffers() {
        let pending = activeLedgers
        activeLedgers.removeAll()
        guard !pending.allSatisfy({ $0.waitAll(deadline: .now + .milliseconds(200)) }) else { return }
        transport.discardPendingSends()
        if !pending.allSatisfy({ $0.waitAll(deadline: .now + .seconds(2)) }) {
            options.log("zerotrain comm: rank \(rank): the transport still holds sent buffers after a failed collective; do not reuse them")
        }
    }

    private func newLedger() -> SendLedger {
        let ledger = SendLedger()
        activeLedgers.append(ledger)
        return ledger
    }

    public static func name(of operation: FrameHeader.Operation) -> String {
        switch operation {
        case .none: "none"
        case .allReduce: "allReduce"
        case .reduceScatter: "reduceScatter"
        case .allGather: "allGather"
        case .broadcast: "broadcast"
        case .scalars: "allReduceScalars"
        case .barrier: "barrier"
        case .exchange: "exchange"
        }
    }

    private func dataHeader(_ operation: FrameHeader.Operation, _ type: FrameHeader.ElementType, sequence: UInt64,
                            hop: Int, chunk: Int, segment: Int) -> FrameHeader {
        FrameHeader(kind: .data, elementType: type, operation: operation, jobID: jobID, epoch: epoch,
                    sequence: sequence, sourceRank: UInt32(rank), hop: UInt32(hop), chunk: UInt32(chunk),
                    segment: UInt32(segment))
    }

    private func waitAll(_ ledger: SendLedger, deadline: ContinuousClock.Instant) throws {
        guard ledger.waitAll(deadline: deadline) else {
            throw CommError(.timeout, "the transport still holds sent buffers at the deadline (successor not draining)",
                            peer: successor)
        }
    }

    // MARK: - Receiving

    /// Receives the frame (`hop`, `chunk`, `segment`) of collective `sequence` from the
    /// predecessor and hands its payload to `body`. Drops frames of older epochs, older sequences
    /// and other jobs; anything else unexpected is an error.
    private func receiveData<R>(_ operation: FrameHeader.Operation, _ type: FrameHeader.ElementType, sequence: UInt64,
                                hop: Int, chunk: Int, segment: Int, byteCount: Int?,
                                deadline: ContinuousClock.Instant, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try receiveData(operation, type, sequence: sequence, hop: hop, chunk: chunk, segment: segment,
                        byteCount: byteCount, deadline: deadline) { payload, _ in try body(payload) }
    }

    /// As above; `body` also gets the payload CRC the sender put in the header (nil if none), which
    /// was verified and can be reused when the bytes are forwarded unchanged.
    ///
    /// With `verifyPayload: false` that CRC is *not* verified yet: `body` must compute the CRC-32C of
    /// the payload in the pass that consumes it (`CRC32C.accumulate`, `CRC32C.copy`) and throw
    /// `payloadMismatch()` when they differ, before the bytes go anywhere else (sent on, returned).
    private func receiveData<R>(_ operation: FrameHeader.Operation, _ type: FrameHeader.ElementType, sequence: UInt64,
                                hop: Int, chunk: Int, segment: Int, byteCount: Int?, verifyPayload: Bool = true,
                                deadline: ContinuousClock.Instant,
                                _ body: (UnsafeRawBufferPointer, UInt32?) throws -> R) throws -> R {
        while true {
            let result: R? = try transport.receive(deadline: deadline) { rawHeader, payload -> R? in
                let h: FrameHeader
                do {
                    h = try FrameHeader.decode(header: rawHeader, payload: payload, verifyPayloadCRC: verifyPayload)
                } catch let e as CommError {
                    var e = e
                    e.peer = predecessor
                    throw e
                }
                if h.jobID != jobID || h.epoch < epoch {
                    droppedFrames += 1
                    return nil
                }
                if h.epoch > epoch {
                    throw CommError(.epochAhead, "rank \(h.sourceRank) is already in epoch \(h.epoch); this group is stale, re-form it",
                                    peer: Int(h.sourceRank))
                }
                if h.kind == .abort {
                    let reason = String(decoding: payload, as: UTF8.self)
                    throw CommError(.peerAborted, "rank \(h.sourceRank) aborted \(Self.name(of: h.operation)) #\(h.sequence) blaming rank \(h.chunk): \(reason)",
                                    peer: Int(h.chunk))
                }
                if h.sequence < sequence {
                    droppedFrames += 1
                    return nil
                }
                guard h.sequence == sequence, h.operation == operation, h.elementType == type,
                      h.hop == UInt32(hop), h.chunk == UInt32(chunk), h.segment == UInt32(segment),
                      h.sourceRank == UInt32(predecessor), byteCount.map({ $0 == payload.count }) ?? true
                else {
                    throw CommError(.protocolMismatch, """
                        expected \(Self.name(of: operation)) #\(sequence) hop \(hop) chunk \(chunk) segment \(segment) \
                        (\(byteCount.map(String.init) ?? "any") bytes of \(type)) from rank \(predecessor), got \
                        \(Self.name(of: h.operation)) #\(h.sequence) hop \(h.hop) chunk \(h.chunk) segment \(h.segment) \
                        (\(payload.count) bytes of \(h.elementType)) from rank \(h.sourceRank); \
                        all ranks must call the same collectives with the same sizes in the same order
                        """, peer: Int(h.sourceRank))
                }
                return try body(payload, h.flags & FrameHeader.flagPayloadCRC != 0 ? h.payloadCRC : nil)
            }
            if let result { return result }
        }
    }

    // MARK: - Ring reduce-scatter / all-gather

    /// Runs the unified ring hops `hops` over `buffer`: hops 0..<N−1 are reduce-scatter (rank r
    /// sends chunk r−t−1 and reduces received chunk r−t−2 into its buffer), hops N−1..<2N−2 are
    /// all-gather (rank r sends chunk r−s, copies received chunk r−s−1, s = t−(N−1)). Whatever is
    /// received at hop t is sent on at hop t+1, segment by segment, so the segments pipeline.
    private func ring(_ buffer: UnsafeMutableBufferPointer<Float>, layout: RingLayout, hops: Range<Int>,
                      operation: FrameHeader.Operation, sequence: UInt64, op: ReduceOp, wire: WireFormat,
                      deadline: ContinuousClock.Instant) throws {
        let n = worldSize, r = rank
        guard n > 1, !hops.isEmpty else { return }
        let segments = layout.segmentsPerChunk
        let type: FrameHeader.ElementType = wire == .bfloat16 ? .bfloat16 : .float32
        let ledger = newLedger()
        // Ledger index of the borrowed send of (hop, segment), -1 when the payload was copied.
        var lent = [Int](repeating: -1, count: hops.count * segments)
        // CRC of the all-gather segment received last, per segment: forwarded bytes keep their CRC.
        var forwardedCRC = [UInt32?](repeating: nil, count: segments)
        // CRC of each segment of this rank's own chunk, computed while the last reduce-scatter hop
        // wrote it, for the first all-gather hop that sends it.
        var ownCRC = [UInt32?](repeating: nil, count: segments)
        let mod = { (x: Int) in ((x % n) + n) % n }
        let sendChunk = { (t: Int) in t < n - 1 ? mod(r - t - 1) : mod(r - (t - (n - 1))) }
        let receiveChunk = { (t: Int) in t < n - 1 ? mod(r - t - 2) : mod(r - 1 - (t - (n - 1))) }
        let includesReduceScatter = hops.lowerBound < n - 1

        if !includesReduceScatter, wire == .bfloat16 {
            // The owner's shard must hold exactly what the others will receive.
            let own = layout.chunkRange(r)
            for i in own { buffer[i] = BFloat16.round(buffer[i]) }
        }

        func send(hop t: Int, segment k: Int) throws {
            let c = sendChunk(t)
            let range = layout.segmentRange(chunk: c, segment: k)
            var header = dataHeader(operation, type, sequence: sequence, hop: t, chunk: c, segment: k)
            let values = UnsafeBufferPointer(rebasing: buffer[range])
            // Hops after the first all-gather hop forward exactly the bytes received (and checked);
            // the first one sends the owner's chunk, whose CRC the last reduce hop already computed.
            let known = !options.checksumPayloads ? nil : t > n - 1 ? forwardedCRC[k] : t == n - 1 ? ownCRC[k] : nil
            switch wire {
            case .float32:
                let payload = UnsafeRawBufferPointer(values)
                if let known {
                    header.seal(payloadLength: payload.count, knownCRC: known)
                } else {
                    header.seal(payload: payload, checksum: options.checksumPayloads)
                }
                let release = ledger.makeRelease()
                lent[(t - hops.lowerBound) * segments + k] = release.index
                try transport.send(header: header, payload: payload, release: release, deadline: deadline)
            case .bfloat16:
                try transport.send(payloadByteCount: range.count * 2, deadline: deadline) { out in
                    BFloat16.encode(values, into: out)
                    if let known {
                        header.seal(payloadLength: out.count, knownCRC: known)
                    } else {
                        header.seal(payload: UnsafeRawBufferPointer(out), checksum: options.checksumPayloads)
                    }
                    return header
                }
            }
        }

        for k in 0..<segments { try send(hop: hops.lowerBound, segment: k) }
        for t in hops {
            let c = receiveChunk(t)
            let reducing = t < n - 1
            for k in 0..<segments {
                let range = layout.segmentRange(chunk: c, segment: k)
                let target = UnsafeMutableBufferPointer(rebasing: buffer[range])
                if !reducing, includesReduceScatter {
                    // All-gather hop s overwrites the chunk this rank lent at reduce-scatter hop s.
                    let index = lent[(t - (n - 1) - hops.lowerBound) * segments + k]
                    if index >= 0, !ledger.wait(for: index, deadline: deadline) {
                        throw CommError(.timeout, "the transport still holds a sent segment at the deadline", peer: successor)
                    }
                }
                // fp32 payloads are checked in the same pass that reduces or copies them (one read
                // instead of two). A corrupted segment has then already been written into `target`
                // when the mismatch throws: the collective fails, and as after any failure the
                // buffer's contents are unspecified. Nothing corrupted is ever sent on.
                try receiveData(operation, type, sequence: sequence, hop: t, chunk: c, segment: k,
                                byteCount: range.count * type.stride, verifyPayload: wire != .float32,
                                deadline: deadline) { payload, crc in
                    forwardedCRC[k] = crc
                    if wire == .float32 {
                        let last = t == n - 2
                        // This rank sends the chunk it finishes now at the next hop: CRC it while writing.
                        let sendsResult = reducing && last && t + 1 < hops.upperBound && options.checksumPayloads
                        if reducing, crc != nil || sendsResult {
                            let divisor: Float = last && op == .average ? Float(n) : 1
                            var result: UInt32 = 0
                            let received = sendsResult
                                ? CRC32C.accumulate(payload, into: target, divisor: divisor, resultCRC: &result)
                                : CRC32C.accumulate(payload, into: target, divisor: divisor)
                            if let crc, received != crc { throw mismatch() }
                            ownCRC[k] = sendsResult ? result : nil
                            return
                        }
                        if !reducing, let crc {
                            guard CRC32C.copy(payload, into: UnsafeMutableRawBufferPointer(target)) == crc else { throw mismatch() }
                            return
                        }
                    }
                    if reducing {
                        Self.accumulate(payload, type: type, into: target)
                        if t == n - 2 { Self.finish(target, op: op, worldSize: n, wire: wire) }
                    } else {
                        Self.copy(payload, type: type, into: target)
                    }
                }
                if t + 1 < hops.upperBound { try send(hop: t + 1, segment: k) }
            }
        }
        try waitAll(ledger, deadline: deadline)
    }

    /// A received payload whose CRC-32C differs from its header's, blamed on the predecessor.
    private func mismatch() -> CommError {
        var error = FrameHeader.payloadMismatch()
        error.peer = predecessor
        return error
    }

    /// Segment size in fp32 elements for chunks of `chunk` elements: at most `segmentBytes`, but
    /// cut into at least 4 segments (of at least 64 KiB) so mid-sized buffers pipeline as well.
    private func segmentElements(forChunk chunk: Int) -> Int {
        let largest = max(1, options.segmentBytes / 4)
        return min(largest, max((chunk + 3) / 4, 16_384))
    }

    /// `target[i] = incoming[i] + target[i]` (incoming = partial sum of the earlier ranks).
    static func accumulate(_ payload: UnsafeRawBufferPointer, type: FrameHeader.ElementType,
                           into target: UnsafeMutableBufferPointer<Float>) {
        guard let dst = target.baseAddress, let src = payload.baseAddress else { return }
        let n = target.count
        switch type {
        case .float32 where Int(bitPattern: src) & 3 == 0:
            let s = src.assumingMemoryBound(to: Float.self)
            for i in 0..<n { dst[i] = s[i] + dst[i] }
        case .float32:
            for i in 0..<n { dst[i] = src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) + dst[i] }
        case .bfloat16:
            for i in 0..<n {
                dst[i] = BFloat16.decode(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) + dst[i]
            }
        case .bytes, .float64:
            break
        }
    }

    static func copy(_ payload: UnsafeRawBufferPointer, type: FrameHeader.ElementType,
                     into target: UnsafeMutableBufferPointer<Float>) {
        guard let dst = target.baseAddress, let src = payload.baseAddress else { return }
        switch type {
        case .float32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: target.count * 4)
        case .bfloat16:
            for i in 0..<target.count {
                dst[i] = BFloat16.decode(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bytes, .float64:
            break
        }
    }

    /// Applied once by the owner of a fully reduced chunk.
    static func finish(_ target: UnsafeMutableBufferPointer<Float>, op: ReduceOp, worldSize: Int, wire: WireFormat) {
        if op == .average {
            let divisor = Float(worldSize)
            for i in 0..<target.count { target[i] = target[i] / divisor }
        }
        if wire == .bfloat16 {
            for i in 0..<target.count { target[i] = BFloat16.round(target[i]) }
        }
    }

    // MARK: - Broadcast chain

    private func chainBroadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int, sequence: UInt64,
                                deadline: ContinuousClock.Instant) throws {
        let n = worldSize
        guard n > 1 else { return }
        let layout = RingLayout(count: buffer.count, worldSize: 1, segmentElements: segmentElements(forChunk: buffer.count))
        let position = ((rank - root) % n + n) % n
        let ledger = newLedger()
        var forwardedCRC: UInt32?
        func send(_ k: Int) throws {
            let range = layout.segmentRange(chunk: 0, segment: k)
            let payload = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: buffer[range]))
            var header = dataHeader(.broadcast, .float32, sequence: sequence, hop: 0, chunk: root, segment: k)
            if position > 0, options.checksumPayloads, let forwardedCRC {
                header.seal(payloadLength: payload.count, knownCRC: forwardedCRC)
            } else {
                header.seal(payload: payload, checksum: options.checksumPayloads)
            }
            try transport.send(header: header, payload: payload, release: ledger.makeRelease(), deadline: deadline)
        }
        for k in 0..<layout.segmentsPerChunk {
            if position > 0 {
                let range = layout.segmentRange(chunk: 0, segment: k)
                try receiveData(.broadcast, .float32, sequence: sequence, hop: 0, chunk: root, segment: k,
                                byteCount: range.count * 4, verifyPayload: false, deadline: deadline) { payload, crc in
                    let target = UnsafeMutableBufferPointer(rebasing: buffer[range])
                    if let crc {
                        // Checked while copied, as in the ring.
                        guard CRC32C.copy(payload, into: UnsafeMutableRawBufferPointer(target)) == crc else { throw mismatch() }
                    } else {
                        Self.copy(payload, type: .float32, into: target)
                    }
                    forwardedCRC = crc
                }
            }
            if position < n - 1 { try send(k) }
        }
        try waitAll(ledger, deadline: deadline)
    }

    // MARK: - Small vectors

    /// Circulates every rank's `values` once around the ring; returns them indexed by rank.
    private func gatherScalars(_ values: [Double], operation: FrameHeader.Operation, sequence: UInt64,
                               deadline: ContinuousClock.Instant) throws -> [[Double]] {
        let n = worldSize
        var table = [[Double]](repeating: [], count: n)
        table[rank] = values
        guard n > 1 else { return table }
        let mod = { (x: Int) in ((x % n) + n) % n }
        func send(hop s: Int) throws {
            let owner = mod(rank - s)
            let row = table[owner]
            try transport.send(payloadByteCount: row.count * 8, deadline: deadline) { out in
                row.withUnsafeBytes { if $0.count > 0 { out.copyMemory(from: $0) } }
                var header = dataHeader(operation, .float64, sequence: sequence, hop: s, chunk: owner, segment: 0)
                header.seal(payload: UnsafeRawBufferPointer(out), checksum: options.checksumPayloads)
                return header
            }
        }
        try send(hop: 0)
        for s in 0..<(n - 1) {
            let owner = mod(rank - s - 1)
            table[owner] = try receiveData(operation, .float64, sequence: sequence, hop: s, chunk: owner, segment: 0,
                                           byteCount: values.count * 8, deadline: deadline) { payload in
                (0..<values.count).map { payload.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
            }
            if s + 1 < n - 1 { try send(hop: s + 1) }
        }
        return table
    }
}
