import Comm
import Model

/// The map from named tensors to shards: which rank owns which elements of the flat parameter
/// buffer (and, with the same layout, of the gradient and Adam m/v buffers).
///
/// Shard `r` is exactly `RingLayout.shardRange(count: Ψ, rank: r, worldSize: N)`: `Ψ / N` elements,
/// plus one for the first `Ψ % N` ranks. There is no padding inside the flat buffer, so a shard is
/// precisely the slice a ring reduce-scatter leaves on its rank and the plan and the collectives
/// can never disagree. Shards may be empty when Ψ < N. Tensors are not aligned to shard edges:
/// a tensor may straddle several shards, and then it has one `Piece` per shard it touches.
///
/// For allocation, `allocationCount` is the largest shard rounded up to `alignment` elements
/// (64 bytes of Float): every rank allocates that many, so shard buffers are equal-sized and
/// SIMD-aligned; the tail beyond a rank's own `shardRange` count is unused padding.
///
/// The plan is `Codable` (it travels to ranks and is stored in checkpoints); after decoding,
/// `validate()` checks that it is self-consistent and `validate(against:)` that it matches a model.
public struct PartitionPlan: Codable, Sendable, Equatable {
    /// Elements every shard allocation is rounded up to (16 Floats = 64 bytes, one SIMD16 / cache line).
    public static let alignment = 16

    /// One contiguous run of a tensor that lives in one shard.
    public struct Piece: Codable, Sendable, Equatable, Hashable {
        /// The owning rank.
        public let shard: Int
        /// First element of the run within the shard.
        public let offsetInShard: Int
        /// First element of the run within the tensor (row-major, as the tensor is stored).
        public let offsetInTensor: Int
        /// Elements in the run (≥ 1).
        public let count: Int

        public init(shard: Int, offsetInShard: Int, offsetInTensor: Int, count: Int) {
            self.shard = shard
            self.offsetInShard = offsetInShard
            self.offsetInTensor = offsetInTensor
            self.count = count
        }
    }

    /// One named tensor and the pieces it is cut into, in tensor order.
    public struct Placement: Codable, Sendable, Equatable {
        /// Hugging Face name.
        public let name: String
        public let shape: [Int]
        /// First element in the flat buffer.
        public let offset: Int
        /// Elements of the tensor.
        public let count: Int
        /// Consecutive runs covering the tensor; shards ascending. Empty for an empty tensor.
        public let pieces: [Piece]
    }

    /// Elements of the flat buffer (Ψ).
    public let totalCount: Int
    /// Ranks (N).
    public let worldSize: Int
    /// Every tensor, in flat-buffer order.
    public let tensors: [Placement]

    /// The plan of a model's parameter table over `worldSize` ranks.
    public init(table: ParameterTable, worldSize: Int) {
        self.init(tensors: table.entries.map { ($0.name, $0.shape) }, worldSize: worldSize)
    }

    /// The plan of tensors laid out back to back in the given order (offsets are implied).
    public init(tensors: [(name: String, shape: [Int])], worldSize: Int) {
        precondition(worldSize >= 1, "a partition plan needs at least one rank")
        let total = tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
        var placements: [Placement] = []
        placements.reserveCapacity(tensors.count)
        var offset = 0
        for t in tensors {
            let count = t.shape.reduce(1, *)
            placements.append(Placement(name: t.name, shape: t.shape, offset: offset, count: count,
                                        pieces: Self.pieces(of: offset..<(offset + count), total: total, worldSize: worldSize)))
            offset += count
        }
        self.totalCount = total
        self.worldSize = worldSize
        self.tensors = placements
    }

    /// Cuts the flat range `range` at shard boundaries.
    static func pieces(of range: Range<Int>, total: Int, worldSize: Int) -> [Piece] {
        guard !range.isEmpty else { return [] }
        var result: [Piece] = []
        var shard = shardIndex(ofElement: range.lowerBound, total: total, worldSize: worldSize)
        var position = range.lowerBound
        while position < range.upperBound {
            let s = RingLayout.shardRange(count: total, rank: shard, worldSize: worldSize)
            let end = min(s.upperBound, range.upperBound)
            if end > position {
                result.append(Piece(shard: shard, offsetInShard: position - s.lowerBound,
                                    offsetInTensor: position - range.lowerBound, count: end - position))
                position = end
            }
            shard += 1
        }
        return result
    }

    /// The rank owning flat element `element` (0 ≤ element < total), in O(1).
    static func shardIndex(ofElement element: Int, total: Int, worldSize: Int) -> Int {
        let base = total / worldSize, extra = total % worldSize
        // The first `extra` shards hold base + 1 elements, the rest base.
        let big = extra * (base + 1)
        if element < big { return element / (base + 1) }
        return extra + (element - big) / base
    }

    // MARK: queries

    /// Rank `rank`'s slice of the flat buffer.
    public func shardRange(_ rank: Int) -> Range<Int> {
        RingLayout.shardRange(count: totalCount, rank: rank, worldSize: worldSize)
    }

    /// Elements of the largest shard (⌈Ψ / N⌉): what the busiest rank holds.
    public var largestShardCount: Int { (totalCount + worldSize - 1) / worldSize }

    /// Elements every rank allocates per sharded buffer: the largest shard rounded up to `alignment`.
    public var allocationCount: Int {
        (largestShardCount + Self.alignment - 1) / Self.alignment * Self.alignment
    }

    /// The rank owning flat element `element`.
    public func shard(ofElement element: Int) -> Int {
        precondition(element >= 0 && element < totalCount, "element \(element) outside 0..<\(totalCount)")
        return Self.shardIndex(ofElement: element, total: totalCount, worldSize: worldSize)
    }

    /// The placement of a named tensor, or nil.
    public func placement(named name: String) -> Placement? {
        tensors.first { $0.name == name }
    }

    /// The runs of tensors stored in shard `rank`, in shard order: (tensor index in `tensors`, piece).
    public func contents(ofShard rank: Int) -> [(tensor: Int, piece: Piece)] {
        let s = shardRange(rank)
        guard !s.isEmpty else { return [] }
        var result: [(tensor: Int, piece: Piece)] = []
        // Tensors are in flat order: binary-search the first tensor that ends after the shard starts.
        var lo = 0, hi = tensors.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if tensors[mid].offset + tensors[mid].count <= s.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        var i = lo
        while i < tensors.count && tensors[i].offset < s.upperBound {
            for p in tensors[i].pieces where p.shard == rank { result.append((i, p)) }
            i += 1
        }
        return result
    }

    // MARK: checks

    /// Checks the plan is self-consistent (e.g. after decoding): tensors back to back from 0 to Ψ,
    /// each tensor covered by consecutive pieces that lie inside their shards.
    public func validate() throws {
        func fail(_ why: String) -> ZeroError { ZeroError(.badInput, "partition plan: \(why)") }
        guard worldSize >= 1 else { throw fail("world size must be ≥ 1, got \(worldSize)") }
        guard totalCount >= 0 else { throw fail("total count must be ≥ 0, got \(totalCount)") }
        var offset = 0
        for t in tensors {
            guard t.offset == offset else { throw fail("\(t.name) starts at \(t.offset), expected \(offset)") }
            guard t.count == t.shape.reduce(1, *), t.count >= 0 else {
                throw fail("\(t.name) has \(t.count) elements but shape \(t.shape)")
            }
            var inTensor = 0
            for p in t.pieces {
                guard p.shard >= 0 && p.shard < worldSize else { throw fail("\(t.name) names shard \(p.shard) of \(worldSize)") }
                guard p.offsetInTensor == inTensor, p.count >= 1 else {
                    throw fail("\(t.name) pieces do not tile the tensor at element \(inTensor)")
                }
                let s = shardRange(p.shard)
                guard s.lowerBound + p.offsetInShard == t.offset + p.offsetInTensor, p.offsetInShard >= 0,
                      p.offsetInShard + p.count <= s.count else {
                    throw fail("\(t.name) piece in shard \(p.shard) lies outside the shard")
                }
                inTensor += p.count
            }
            guard inTensor == t.count else { throw fail("\(t.name) pieces cover \(inTensor) of \(t.count) elements") }
            offset += t.count
        }
        guard offset == totalCount else { throw fail("tensors cover \(offset) of \(totalCount) elements") }
    }

    /// Checks the plan belongs to `table`'s model (same names, shapes and order) and is self-consistent.
    public func validate(against table: ParameterTable) throws {
        try validate()
        guard totalCount == table.count, tensors.count == table.entries.count else {
            throw ZeroError(.badInput, "partition plan: made for \(tensors.count) tensors / \(totalCount) elements, "
                            + "the model has \(table.entries.count) / \(table.count)")
        }
        for (t, e) in zip(tensors, table.entries) where t.name != e.name || t.shape != e.shape || t.offset != e.offset {
            throw ZeroError(.badInput, "partition plan: tensor \(t.name) \(t.shape) does not match the model's \(e.name) \(e.shape)")
        }
    }
}
