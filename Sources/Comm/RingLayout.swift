/// How a flat buffer of `count` elements is cut for a ring of `worldSize` ranks.
///
/// Chunk (= shard) `c` is rank c's contiguous slice. By default that is `count / N` elements, plus
/// one for the first `count % N` chunks, so chunks may be empty when `count < N`; a caller may give
/// the chunk boundaries instead (the "v" collectives: a ZeRO region of the flat buffer cut where the
/// global shards cut it). Each chunk travels as `segmentsPerChunk` segments of at most
/// `segmentElements` elements (the last ones may be short or empty), which is what pipelines a
/// large transfer around the ring.
public struct RingLayout: Sendable, Equatable {
    public let count: Int
    public let worldSize: Int
    public let segmentElements: Int
    /// N + 1 increasing offsets from 0 to `count`; chunk c is `bounds[c]..<bounds[c+1]`.
    public let bounds: [Int]

    public init(count: Int, worldSize: Int, segmentElements: Int) {
        precondition(count >= 0 && worldSize >= 1 && segmentElements >= 1, "invalid ring layout")
        self.count = count
        self.worldSize = worldSize
        self.segmentElements = segmentElements
        self.bounds = (0..<worldSize).map { Self.shardRange(count: count, rank: $0, worldSize: worldSize).lowerBound } + [count]
    }

    /// A layout with the chunk sizes given (`chunks[c]` elements for rank c, any of them 0).
    public init(chunks: [Int], segmentElements: Int) {
        precondition(!chunks.isEmpty && chunks.allSatisfy { $0 >= 0 } && segmentElements >= 1, "invalid ring layout")
        var bounds = [0]
        for c in chunks { bounds.append(bounds.last! + c) }
        self.count = bounds.last!
        self.worldSize = chunks.count
        self.segmentElements = segmentElements
        self.bounds = bounds
    }

    /// The slice of a `count`-element buffer owned by `rank` (its shard after reduce-scatter).
    public static func shardRange(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
        let base = count / worldSize, extra = count % worldSize
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    public func chunkRange(_ chunk: Int) -> Range<Int> { bounds[chunk]..<bounds[chunk + 1] }

    /// Elements of the largest chunk.
    public var largestChunk: Int { (0..<worldSize).map { chunkRange($0).count }.max() ?? 0 }

    /// Segments every chunk is cut into (at least 1, sized by the largest chunk).
    public var segmentsPerChunk: Int {
        max(1, (largestChunk + segmentElements - 1) / segmentElements)
    }

    /// Elements of segment `segment` of chunk `chunk` (possibly empty).
    public func segmentRange(chunk: Int, segment: Int) -> Range<Int> {
        let c = chunkRange(chunk)
        let lo = min(c.lowerBound + segment * segmentElements, c.upperBound)
        let hi = min(lo + segmentElements, c.upperBound)
        return lo..<hi
    }
}
