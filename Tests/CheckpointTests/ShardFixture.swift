import Checkpoint
import Foundation
import Tensor

/// Builds sharded checkpoints for the tests: deterministic flat buffers (arbitrary bit patterns,
/// NaN payloads and signed zeros included, so "equal" means bit for bit), cut into contiguous
/// rank slices, written with `ShardWriter` and committed.
enum ShardFixture {
    struct Config: Codable, Sendable, Equatable { var name: String }

    static func tempDir() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-shards-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The three flat buffers of a checkpoint.
    struct State: Sendable {
        let buffers: [ShardTensor: FloatBuffer]
        var count: Int { buffers[.parameters]!.count }
        func bits(_ t: ShardTensor, _ range: Range<Int>) -> [UInt32] { range.map { buffers[t]!.pointer[$0].bitPattern } }
    }

    static func state(count: Int, salt: UInt32) -> State {
        var buffers: [ShardTensor: FloatBuffer] = [:]
        for (k, t) in ShardTensor.allCases.enumerated() {
            let b = FloatBuffer(count: count)
            var x = salt &+ UInt32(k) &* 0x9E37_79B9
            for i in 0..<count {
                x = x &* 1_664_525 &+ 1_013_904_223
                b.pointer[i] = Float(bitPattern: x ^ UInt32(truncatingIfNeeded: i))
            }
            buffers[t] = b
        }
        return State(buffers: buffers)
    }

    /// `count` elements over `ranks` contiguous slices of nearly equal size (the first ones larger).
    static func partition(_ count: Int, ranks: Int) -> [Range<Int>] {
        (0..<ranks).map { r in
            let base = count / ranks, extra = count % ranks
            let start = r * base + min(r, extra)
            return start..<(start + base + (r < extra ? 1 : 0))
        }
    }

    /// Writes every rank's shard into the pending folder of `step` (the ranks in parallel) and returns the entries.
    static func writeShards(_ state: State, store: CheckpointStore, step: Int, ranks: Int, seed: UInt64 = 7) throws -> [CheckpointFile] {
        let slices = partition(state.count, ranks: ranks)
        let folder = store.pendingFolder(step: step)
        let results = Results(count: ranks)
        DispatchQueue.concurrentPerform(iterations: ranks) { r in
            let s = slices[r]
            func slice(_ t: ShardTensor) -> UnsafeBufferPointer<Float> {
                UnsafeBufferPointer(start: state.buffers[t]!.pointer + s.lowerBound, count: s.count)
            }
            results.set(r, Result {
                try ShardWriter.write(into: folder, rank: r, worldSize: ranks, start: s.lowerBound, step: step, seed: seed,
                                      parameters: slice(.parameters), expAvg: slice(.expAvg), expAvgSq: slice(.expAvgSq))
            })
        }
        return try results.all()
    }

    static func manifest(step: Int, ranks: Int, count: Int, files: [CheckpointFile]) -> CheckpointManifest<Config> {
        CheckpointManifest(step: step, worldSize: ranks, zeroStage: 2, config: Config(name: "c\(step)"),
                           tensors: [TensorLayout(name: "flat", shape: [count], offset: 0)],
                           dataCursor: DataCursor(samplesConsumed: 16 * step, globalBatch: 16, seed: 7),
                           schedule: ScheduleState(kind: "cosine", peakLR: 3e-4, warmupSteps: 10, totalSteps: 1000, numCycles: 0.5,
                                                   nextLR: 2.5e-4),
                           skippedSteps: 1, files: files)
    }

    /// Shards + commit: a complete checkpoint of `state` at `step`, written by `ranks` ranks.
    @discardableResult
    static func save(_ state: State, store: CheckpointStore, step: Int, ranks: Int, keep: Int = 3) throws -> URL {
        let files = try writeShards(state, store: store, step: step, ranks: ranks)
        return try store.commit(manifest(step: step, ranks: ranks, count: state.count, files: files), keep: keep)
    }

    /// Reads `range` of every tensor in `pieces` consecutive reads and returns the bit patterns.
    static func read(_ reader: CheckpointReader<Config>, _ t: ShardTensor, _ range: Range<Int>, pieces: Int) throws -> [UInt32] {
        let out = FloatBuffer(count: max(1, range.count))
        let cuts = partition(range.count, ranks: pieces)
        for c in cuts where !c.isEmpty {
            try reader.read(t, elements: (range.lowerBound + c.lowerBound)..<(range.lowerBound + c.upperBound), into: out.pointer + c.lowerBound)
        }
        return (0..<range.count).map { out.pointer[$0].bitPattern }
    }

    /// Flips one bit of byte `offset` of a file in place.
    static func flipByte(_ url: URL, at offset: Int) throws {
        let h = try FileHandle(forUpdating: url)
        defer { try? h.close() }
        try h.seek(toOffset: UInt64(offset))
        let b = try h.read(upToCount: 1)![0]
        try h.seek(toOffset: UInt64(offset))
        try h.write(contentsOf: Data([b ^ 0x10]))
    }

    /// One result per rank, set from the writer threads.
    final class Results: @unchecked Sendable {  // Safe: every access holds the lock.
        private let lock = NSLock()
        private var values: [Result<CheckpointFile, any Error>?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<CheckpointFile, any Error>) { lock.withLock { values[i] = r } }
        func all() throws -> [CheckpointFile] { try lock.withLock { values }.map { try $0!.get() } }
    }
}
