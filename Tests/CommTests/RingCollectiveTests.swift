import Comm
import Testing
import ZeroTrainTestKit

/// The ring schedules over the in-memory transport, checked bit for bit against the direct
/// computation in `ReferenceCollectives`.
@Suite("Ring collectives (in-memory)", .serialized)
struct RingCollectiveTests {
    static let kinds: [CollectiveCheck.Kind] = [.allReduce, .reduceScatter, .allGather, .broadcast, .scalars, .barrier]

    static func counts(_ n: Int) -> [Int] { Array(Set([1, max(n - 1, 0), n, 13, 1_000_003])).sorted() }

    /// Runs `kind` on an in-memory ring of `n` ranks; returns each rank's digest.
    static func run(_ kind: CollectiveCheck.Kind, n: Int, count: Int, op: ProcessGroup.ReduceOp = .sum,
                    wire: ProcessGroup.WireFormat = .float32, root: Int = 0, segmentBytes: Int = 1 << 20) throws -> [UInt64] {
        let fabric = InMemoryFabric(worldSize: n)
        let results = onThreads(n) { rank in
            var options = quietOptions()
            options.segmentBytes = segmentBytes
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: fabric.transport(rank: rank),
                                         epoch: 1, jobID: 5, options: options)
            return try CollectiveCheck.run(kind, group: group, count: count, seed: 99, op: op, wire: wire,
                                           root: root, deadline: .now + .seconds(30)).digest
        }
        return try results.map { try $0.get() }
    }

    @Test(arguments: [1, 2, 3, 5])
    func everyCollectiveMatchesTheDirectComputation(n: Int) throws {
        for kind in Self.kinds {
            for count in Self.counts(n) where !(kind == .scalars && count > 13) {
                let digests = try Self.run(kind, n: n, count: count, root: n / 2)
                for rank in 0..<n {
                    let expected = CollectiveCheck.expectedDigest(kind, rank: rank, worldSize: n, count: count, seed: 99, root: n / 2)
                    #expect(digests[rank] == expected, "\(kind) n=\(n) count=\(count) rank=\(rank)")
                }
            }
        }
    }

    @Test(arguments: [2, 3, 5])
    func averageAndSmallSegmentsPipeline(n: Int) throws {
        // 64-byte segments: many segments per chunk, exercising the segment pipeline and short tails.
        for count in [n - 1, 7 * n + 3, 1_001] {
            let digests = try Self.run(.allReduce, n: n, count: count, op: .average, segmentBytes: 64)
            let expected = CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: n, count: count, seed: 99, op: .average)
            #expect(digests.allSatisfy { $0 == expected }, "n=\(n) count=\(count)")
        }
    }

    @Test(arguments: [2, 3, 5])
    func bfloat16WireIsBitwiseIdenticalOnAllRanks(n: Int) throws {
        for kind in [CollectiveCheck.Kind.allReduce, .allGather] {
            let digests = try Self.run(kind, n: n, count: 10_007, wire: .bfloat16, segmentBytes: 4096)
            let expected = CollectiveCheck.expectedDigest(kind, rank: 0, worldSize: n, count: 10_007, seed: 99, wire: .bfloat16)
            #expect(digests.allSatisfy { $0 == expected }, "\(kind) n=\(n)")
        }
    }

    @Test func sameBitsRunAfterRun() throws {
        let first = try Self.run(.allReduce, n: 3, count: 50_001)
        let second = try Self.run(.allReduce, n: 3, count: 50_001)
        #expect(first == second)
        #expect(Set(first).count == 1)
    }

    @Test func staleEpochAndAbortedCollectiveFramesAreDropped() throws {
        let n = 2, count = 1_000
        let fabric = InMemoryFabric(worldSize: n)
        // Leftovers of earlier memberships (epochs 0 and 1), including an abort, queued at rank 0.
        for epoch: UInt64 in [0, 1] {
            var stale = FrameHeader(kind: .data, elementType: .float32, operation: .allReduce, jobID: 5, epoch: epoch,
                                    sequence: 0, sourceRank: 1, payloadLength: 0)
            [UInt8]().withUnsafeBytes { stale.seal(payload: $0, checksum: true) }
            fabric.inject(into: 0, header: stale.encoded, payload: [])
        }
        var abort = FrameHeader(kind: .abort, elementType: .bytes, operation: .allReduce, jobID: 5, epoch: 1,
                                sequence: 3, sourceRank: 1, chunk: 1)
        [UInt8]().withUnsafeBytes { abort.seal(payload: $0, checksum: true) }
        fabric.inject(into: 0, header: abort.encoded, payload: [])
        let results = onThreads(n) { rank in
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: fabric.transport(rank: rank),
                                         epoch: 2, jobID: 5, options: quietOptions())
            let outcome = try CollectiveCheck.run(.allReduce, group: group, count: count, seed: 99, deadline: .now + .seconds(10))
            if rank == 0 {
                // A late frame of collective #0 of this epoch (as an aborted collective leaves behind).
                var late = FrameHeader(kind: .data, elementType: .float32, operation: .allReduce, jobID: 5, epoch: 2,
                                       sequence: 0, sourceRank: 1, hop: 1, payloadLength: 0)
                [UInt8]().withUnsafeBytes { late.seal(payload: $0, checksum: true) }
                fabric.inject(into: 0, header: late.encoded, payload: [])
            }
            // Rank 1 cannot send its second barrier frame before rank 0 sent its first (after the
            // injection), so rank 0 meets the late frame within these two barriers.
            try group.barrier(deadline: .now + .seconds(10))
            try group.barrier(deadline: .now + .seconds(10))
            return (outcome.digest, group.droppedFrames)
        }
        let expected = CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: n, count: count, seed: 99)
        let values = try results.map { try $0.get() }
        #expect(values.allSatisfy { $0.0 == expected })
        #expect(values[0].1 == 4)
        #expect(values[1].1 == 0)
    }

    @Test func deadPeerFailsEverySurvivorNamingItThenANewEpochWorks() throws {
        let n = 4, dead = 2, count = 200_000
        let fabric = InMemoryFabric(worldSize: n)
        let log = CapturedLog()
        let results = onThreads(n) { rank -> CommError? in
            if rank == dead {
                fabric.kill(rank: dead)
                return nil
            }
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: fabric.transport(rank: rank),
                                         epoch: 1, jobID: 5, options: quietOptions(log))
            let start = ContinuousClock.now
            do {
                _ = try CollectiveCheck.run(.allReduce, group: group, count: count, seed: 1, deadline: .now + .seconds(5))
                return nil
            } catch let error as CommError {
                #expect(start.duration(to: .now) < .seconds(5.5))
                // The group stays failed.
                #expect(throws: CommError.self) { try group.barrier(deadline: .now + .seconds(1)) }
                return error
            }
        }
        for rank in 0..<n where rank != dead {
            let error = try #require(try results[rank].get())
            #expect(error.peer == dead, "rank \(rank): \(error)")
            #expect(error.operation == "allReduce" && error.sequence == 0)
        }
        #expect(log.text.contains("flight recorder"))
        // Survivors re-form as ranks 0..<3 in epoch 2 and complete an all-reduce.
        let m = n - 1
        let fresh = InMemoryFabric(worldSize: m)
        let digests = try onThreads(m) { rank in
            let group = try ProcessGroup(rank: rank, worldSize: m, transport: fresh.transport(rank: rank),
                                         epoch: 2, jobID: 5, options: quietOptions())
            return try CollectiveCheck.run(.allReduce, group: group, count: count, seed: 1, deadline: .now + .seconds(10)).digest
        }.map { try $0.get() }
        let expected = CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: m, count: count, seed: 1)
        #expect(digests.allSatisfy { $0 == expected })
    }

    @Test func silentPeerTimesOutWithinTheDeadlineNamingTheRankWaitedFor() throws {
        let n = 3
        let fabric = InMemoryFabric(worldSize: n)
        let results = onThreads(n) { rank -> CommError? in
            guard rank != 1 else { return nil }   // rank 1 never shows up
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: fabric.transport(rank: rank),
                                         epoch: 1, jobID: 5, options: quietOptions())
            let start = ContinuousClock.now
            do {
                try group.barrier(deadline: .now + .milliseconds(300))
                return nil
            } catch let error as CommError {
                #expect(start.duration(to: .now) < .seconds(2))
                return error
            }
        }
        let e2 = try #require(try results[2].get())
        #expect(e2.peer == 1 && e2.operation == "barrier")
        let e0 = try #require(try results[0].get())
        #expect(e0.peer == 1 || e0.peer == 2)
    }

    @Test func mismatchedCollectivesAreAProtocolError() throws {
        let fabric = InMemoryFabric(worldSize: 2)
        let results = onThreads(2) { rank -> CommError? in
            let group = try ProcessGroup(rank: rank, worldSize: 2, transport: fabric.transport(rank: rank),
                                         epoch: 1, jobID: 5, options: quietOptions())
            do {
                _ = try CollectiveCheck.run(.allReduce, group: group, count: rank == 0 ? 100 : 200, seed: 1,
                                            deadline: .now + .seconds(2))
                return nil
            } catch let error as CommError { return error }
        }
        let codes = try results.map { try $0.get()?.code }
        #expect(codes.contains(.protocolMismatch))
    }
}

/// The "v" variants: reduce-scatter and all-gather with caller-given chunk sizes (ZeRO cuts a
/// region of the flat buffer where the global shards cut it, so chunks are uneven or empty).
@Suite("Ragged ring collectives (in-memory)", .serialized)
struct RaggedCollectiveTests {
    /// Integer-valued inputs, so every summation order gives the same exact result.
    static func input(rank: Int, index: Int) -> Float { Float(rank * 1_000 + index % 997) }

    static let layouts: [[Int]] = [[5, 0], [0, 9], [3, 4, 0], [0, 0, 11], [1_000, 0, 70_001, 3, 0], [2, 2, 2, 2, 2]]

    @Test(arguments: layouts)
    func reduceScatterThenAllGatherWithGivenChunks(chunks: [Int]) throws {
        let n = chunks.count, count = chunks.reduce(0, +)
        let fabric = InMemoryFabric(worldSize: n)
        let results = onThreads(n) { rank -> ([Float], [Float]) in
            var options = quietOptions()
            options.segmentBytes = 4096
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: fabric.transport(rank: rank),
                                         epoch: 1, jobID: 5, options: options)
            var buffer = (0..<count).map { Self.input(rank: rank, index: $0) }
            let own = try buffer.withUnsafeMutableBufferPointer {
                try group.reduceScatter($0, chunks: chunks, deadline: .now + .seconds(30))
            }
            let reduced = Array(buffer[own])
            // All-gather: each rank contributes its own chunk, marked with its rank.
            var gathered = [Float](repeating: -1, count: count)
            for i in own { gathered[i] = Float(rank) }
            try gathered.withUnsafeMutableBufferPointer { try group.allGather($0, chunks: chunks, deadline: .now + .seconds(30)) }
            return (reduced, gathered)
        }
        var start = 0
        for rank in 0..<n {
            let (reduced, gathered) = try results[rank].get()
            let expected = (start..<(start + chunks[rank])).map { i in (0..<n).reduce(Float(0)) { $0 + Self.input(rank: $1, index: i) } }
            #expect(reduced == expected, "rank \(rank) chunks \(chunks)")
            var owners: [Float] = []
            for (c, size) in chunks.enumerated() { owners += [Float](repeating: Float(c), count: size) }
            #expect(gathered == owners, "rank \(rank) chunks \(chunks)")
            start += chunks[rank]
        }
    }

    @Test func chunksThatDoNotCoverTheBufferAreRejectedWithoutBreakingTheGroup() throws {
        let fabric = InMemoryFabric(worldSize: 2)
        let results = onThreads(2) { rank -> [Float] in
            let group = try ProcessGroup(rank: rank, worldSize: 2, transport: fabric.transport(rank: rank),
                                         epoch: 1, jobID: 5, options: quietOptions())
            var buffer: [Float] = [1, 2, 3]
            let error = #expect(throws: CommError.self) {
                try buffer.withUnsafeMutableBufferPointer { try group.reduceScatter($0, chunks: [1, 1], deadline: .now + .seconds(5)) }
            }
            #expect(error?.code == .invalidArgument)
            try buffer.withUnsafeMutableBufferPointer { try group.allReduce($0, deadline: .now + .seconds(10)) }
            return buffer
        }
        for r in results { #expect(try r.get() == [2, 4, 6]) }
    }
}
