import Common
import Bench
import Comm

/// Runs one collective on deterministic inputs and summarises the result as a digest, so ranks in
/// different processes can be checked against `ReferenceCollectives` (bit for bit) and each other.
/// Shared by the in-process tests and the `run` command of the test rank process.
public enum CollectiveCheck {
    /// The collectives a rank can run: the benchmark's list, so one `RankCommand.kind` serves both.
    public typealias Kind = CollectiveBenchmark.Kind

    /// What one rank ran and got.
    public struct Outcome: Sendable, Equatable {
        /// Digest of the part of the result that is specified for this rank.
        public var digest: UInt64
        public var seconds: Double
    }

    /// Fills the inputs from `(seed, rank)`, runs `kind` on `group` and digests the result.
    /// `count` is the element count (fp32 elements; doubles for `.scalars`; bytes/4 for `.exchange`).
    public static func run(_ kind: Kind, group: ProcessGroup, count: Int, seed: UInt64,
                           op: ProcessGroup.ReduceOp = .sum, wire: ProcessGroup.WireFormat = .float32,
                           root: Int = 0, deadline: ContinuousClock.Instant) throws -> Outcome {
        let rank = group.rank
        switch kind {
        case .scalars:
            let values = (0..<count).map { ReferenceCollectives.scalarInput(seed: seed, rank: rank, index: $0) }
            let start = ContinuousClock.now
            let result = try group.allReduceScalars(values, op: op, deadline: deadline)
            return Outcome(digest: ReferenceCollectives.digest(result), seconds: (ContinuousClock.now - start).seconds)
        case .barrier:
            let start = ContinuousClock.now
            try group.barrier(deadline: deadline)
            return Outcome(digest: 0, seconds: (ContinuousClock.now - start).seconds)
        default:
            break
        }
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        ReferenceCollectives.fill(buffer, seed: seed, rank: rank)
        let start = ContinuousClock.now
        var specified = 0..<count
        switch kind {
        case .allReduce:
            try group.allReduce(buffer, op: op, wire: wire, deadline: deadline)
        case .reduceScatter:
            specified = try group.reduceScatter(buffer, op: op, wire: wire, deadline: deadline)
        case .allGather:
            try group.allGather(buffer, wire: wire, deadline: deadline)
        case .broadcast:
            try group.broadcast(buffer, root: root, deadline: deadline)
        case .exchange:
            let received = UnsafeMutableRawBufferPointer.allocate(byteCount: count * 4, alignment: 64)
            defer { received.deallocate() }
            try group.exchange(send: UnsafeRawBufferPointer(buffer), receive: received, deadline: deadline)
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(received))
        case .scalars, .barrier:
            break
        }
        let elapsed = (ContinuousClock.now - start).seconds
        return Outcome(digest: ReferenceCollectives.digest(UnsafeBufferPointer(rebasing: buffer[specified])), seconds: elapsed)
    }

    /// The digest `run` must report on `rank`, computed directly.
    public static func expectedDigest(_ kind: Kind, rank: Int, worldSize: Int, count: Int, seed: UInt64,
                                      op: ProcessGroup.ReduceOp = .sum, wire: ProcessGroup.WireFormat = .float32,
                                      root: Int = 0) -> UInt64 {
        switch kind {
        case .allReduce:
            return ReferenceCollectives.digest(ReferenceCollectives.allReduce(count: count, worldSize: worldSize, seed: seed, op: op, wire: wire))
        case .reduceScatter:
            let all = ReferenceCollectives.allReduce(count: count, worldSize: worldSize, seed: seed, op: op, wire: wire)
            return ReferenceCollectives.digest(Array(all[RingLayout.shardRange(count: count, rank: rank, worldSize: worldSize)]))
        case .allGather:
            return ReferenceCollectives.digest(ReferenceCollectives.allGather(count: count, worldSize: worldSize, seed: seed, wire: wire))
        case .broadcast:
            return ReferenceCollectives.digest((0..<count).map { ReferenceCollectives.input(seed: seed, rank: root, index: $0) })
        case .barrier:
            return 0
        case .scalars:
            return ReferenceCollectives.digest(ReferenceCollectives.scalars(count: count, worldSize: worldSize, seed: seed, op: op))
        case .exchange:
            let from = (rank - 1 + worldSize) % worldSize
            return ReferenceCollectives.digest((0..<count).map { ReferenceCollectives.input(seed: seed, rank: from, index: $0) })
        }
    }
}
