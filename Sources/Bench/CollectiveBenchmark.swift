import Common
import Comm

/// Times a collective the way nccl-tests does: warm-up runs, then timed runs, each started right
/// after a barrier so ranks start together. One rank's view; the launcher combines ranks.
public enum CollectiveBenchmark {
    /// The collectives a rank worker can run (`.exchange` is the point-to-point ring exchange).
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case allReduce, reduceScatter, allGather, broadcast, barrier, scalars, exchange
    }

    /// Seconds of each timed run on this rank.
    /// - Parameters:
    ///   - bytes: buffer size in bytes (fp32 elements × 4; for `.exchange` the bytes each rank sends).
    public static func measure(_ kind: Kind, group: ProcessGroup, bytes: Int,
                               wire: ProcessGroup.WireFormat = .float32, warmup: Int, iterations: Int,
                               timeout: Duration) throws -> [Double] {
        let count = max(1, bytes / 4)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        fill(buffer, rank: group.rank)
        let received = UnsafeMutableRawBufferPointer.allocate(byteCount: count * 4, alignment: 64)
        defer { received.deallocate() }
        received.initializeMemory(as: UInt8.self, repeating: 0)
        var times: [Double] = []
        for i in 0..<(warmup + iterations) {
            try group.barrier(deadline: .now + timeout)
            let start = ContinuousClock.now
            let deadline = start + timeout
            switch kind {
            case .allReduce: try group.allReduce(buffer, op: .sum, wire: wire, deadline: deadline)
            case .reduceScatter: try group.reduceScatter(buffer, wire: wire, deadline: deadline)
            case .allGather: try group.allGather(buffer, wire: wire, deadline: deadline)
            case .broadcast: try group.broadcast(buffer, root: 0, deadline: deadline)
            case .barrier: try group.barrier(deadline: deadline)
            case .scalars: _ = try group.allReduceScalars([1, 2], deadline: deadline)
            case .exchange:
                try group.exchange(send: UnsafeRawBufferPointer(buffer), receive: received, deadline: deadline)
            }
            if i >= warmup { times.append((ContinuousClock.now - start).seconds) }
            if kind == .allReduce, i % 4 == 3 {
                // Keep the values bounded (sums of N copies grow every run).
                fill(buffer, rank: group.rank)
            }
        }
        return times
    }

    /// Fills `buffer` with finite values in [-1, 1) that differ from rank to rank: the timing does
    /// not depend on them, only they must be normal numbers (no subnormal slow path) and the same
    /// on every run. A linear congruential generator (Numerical Recipes constants) seeded by rank.
    static func fill(_ buffer: UnsafeMutableBufferPointer<Float>, rank: Int) {
        var state = UInt32(truncatingIfNeeded: rank &+ 1) &* 0x9E37_79B9
        for i in buffer.indices {
            state = state &* 1_664_525 &+ 1_013_904_223
            buffer[i] = Float(Int32(bitPattern: state) >> 8) / Float(1 << 23)
        }
    }
}
