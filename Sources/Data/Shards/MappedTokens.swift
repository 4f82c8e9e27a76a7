/// Token shards read in place: the token stream of a run is a sequence of runs of memory-mapped
/// shard tokens — one per shard in file order, or one per stretch of consecutive documents in a
/// curriculum's order — and a window is copied (widened to Int32) only when a batch needs it.
/// Memory is the mappings (paged in by the kernel) and 24 bytes a run, never the corpus.
public final class MappedTokens: Sendable {
    public struct Run: Sendable, Equatable {
        public let shard: Int
        public let start: Int
        public let count: Int
    }

    public let shards: [TokenShard]
    public let runs: [Run]
    /// Stream position of each run's first token.
    private let offsets: [Int]
    public let count: Int

    public init(shards: [TokenShard], runs: [Run]) {
        self.shards = shards
        self.runs = runs
        var o: [Int] = [], total = 0
        o.reserveCapacity(runs.count)
        for r in runs {
            o.append(total)
            total += r.count
        }
        offsets = o
        count = total
    }

    /// The shards' tokens in file order.
    public convenience init(shards: [TokenShard]) {
        self.init(shards: shards, runs: shards.enumerated().map { Run(shard: $0, start: 0, count: $1.tokenCount) })
    }

    /// The documents `order` names (indices over all shards' documents in file order), in that
    /// order; consecutive documents of one shard share a run.
    public convenience init(shards: [TokenShard], documentOrder order: [Int]) {
        var firstDocument: [Int] = [], total = 0
        for s in shards {
            firstDocument.append(total)
            total += s.documentCount
        }
        var runs: [Run] = []
        var shardIndex = 0
        for d in order {
            if !(firstDocument[shardIndex] <= d && d < firstDocument[shardIndex] + shards[shardIndex].documentCount) {
                shardIndex = (firstDocument.lastIndex { $0 <= d })!
            }
            let s = shards[shardIndex], local = d - firstDocument[shardIndex]
            let start = s.offset(document: local), end = s.offset(document: local + 1)
            if let last = runs.last, last.shard == shardIndex, last.start + last.count == start {
                runs[runs.count - 1] = Run(shard: shardIndex, start: last.start, count: last.count + end - start)
            } else {
                runs.append(Run(shard: shardIndex, start: start, count: end - start))
            }
        }
        self.init(shards: shards, runs: runs)
    }

    /// Tokens [range) of the stream appended to `out`.
    public func append(_ range: Range<Int>, to out: inout [Int32]) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count)
        var position = range.lowerBound
        // The run holding `position`: the last whose offset is ≤ it.
        var lo = 0, hi = runs.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= position { lo = mid } else { hi = mid - 1 }
        }
        var r = lo
        while position < range.upperBound {
            let run = runs[r], within = position - offsets[r]
            let n = min(run.count - within, range.upperBound - position)
            shards[run.shard].append(run.start + within ..< run.start + within + n, to: &out)
            position += n
            r += 1
        }
    }

    public func tokens(_ range: Range<Int>) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(range.count)
        append(range, to: &out)
        return out
    }
}
