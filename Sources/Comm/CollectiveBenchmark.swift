/// Times a collective the way nccl-tests does: warm-up runs, then timed runs, each started right
/// after a barrier so ranks start together. One rank's view; the launcher combines ranks.
public enum CollectiveBenchmark {
    /// Seconds of each timed run on this rank.
    /// - Parameters:
    ///   - bytes: buffer size in bytes (fp32 elements × 4; for `.exchange` the bytes each rank sends).
    public static func measure(_ kind: CollectiveCheck.Kind, group: ProcessGroup, bytes: Int,
                               wire: ProcessGroup.WireFormat = .float32, warmup: Int, iterations: Int,
                               timeout: Duration) throws -> [Double] {
        let count = max(1, bytes / 4)
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        ReferenceCollectives.fill(buffer, seed: 7, rank: group.rank)
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
            if i >= warmup { times.append(CollectiveCheck.seconds(since: start)) }
            if kind == .allReduce, i % 4 == 3 {
                // Keep the values bounded (sums of N copies grow every run).
                ReferenceCollectives.fill(buffer, seed: 7, rank: group.rank)
            }
        }
        return times
    }
}
