/// How a flat buffer of `count` elements is cut for a ring of `worldSize` ranks.
///
/// Chunk (= shard) `c` is rank c's contiguous slice: `count / N` elements, plus one for the first
/// `count % N` chunks, so chunks may be empty when `count < N`. Each chunk travels as
/// `segmentsPerChunk` segments of at most `segmentElements` elements (the last ones may be short or
/// empty), which is what pipelines a large transfer around the ring.
public struct RingLayout: Sendable, Equatable {
    public let count: Int
    public let worldSize: Int
    public let segmentElements: Int

    public init(count: Int, worldSize: Int, segmentElements: Int) {
        precondition(count >= 0 && worldSize >= 1 && segmentElements >= 1, "invalid ring layout")
        self.count = count
        self.worldSize = worldSize
        self.segmentElements = segmentElements
    }

    /// The slice of a `count`-element buffer owned by `rank` (its shard after reduce-scatter).
    public static func shardRange(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
        let base = count / worldSize, extra = count % worldSize
        let start = rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    public func chunkRange(_ chunk: Int) -> Range<Int> {
        Self.shardRange(count: count, rank: chunk, worldSize: worldSize)
    }

    /// Segments every chunk is cut into (at least 1, sized by the largest chunk).
    public var segmentsPerChunk: Int {
        let largest = chunkRange(0).count
        return max(1, (largest + segmentElements - 1) / segmentElements)
    }

    /// Elements of segment `segment` of chunk `chunk` (possibly empty).
    public func segmentRange(chunk: Int, segment: Int) -> Range<Int> {
        let c = chunkRange(chunk)
        let lo = min(c.lowerBound + segment * segmentElements, c.upperBound)
        let hi = min(lo + segmentElements, c.upperBound)
        return lo..<hi
    }
}
