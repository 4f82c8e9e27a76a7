import Comm
import CommZMQ
import Foundation
import Synchronization
import Testing
import ZeroTrainTestKit

/// Ranks as threads of this process over real ZeroMQ sockets: inproc (one shared context), tcp and
/// ipc (one context per rank, as in separate processes).
@Suite("ZeroMQ transport", .serialized)
struct ZMQTransportTests {
    /// Endpoints published by binding ranks, read by connecting ranks.
    final class Rendezvous: Sendable {
        private let endpoints: Mutex<[Int: String]> = Mutex([:])
        func publish(_ rank: Int, _ endpoint: String) { endpoints.withLock { $0[rank] = endpoint } }
        func lookup(_ rank: Int, timeout: Duration = .seconds(10)) throws -> String {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let e = endpoints.withLock({ $0[rank] }) { return e }
                Thread.sleep(forTimeInterval: 0.001)
            }
            throw CommError(.timeout, "rank \(rank) never bound")
        }
    }

    static func endpoint(_ scheme: String, tag: String, rank: Int) -> String {
        switch scheme {
        case "tcp": "tcp://127.0.0.1:*"
        case "ipc": "ipc:///tmp/zerotrain-test-\(tag)-\(rank)"
        default: "inproc://zerotrain-test-\(tag)-\(rank)"
        }
    }

    /// Forms an n-rank ZeroMQ ring on threads and runs `body(group)` on each.
    static func withRing<T: Sendable>(_ n: Int, scheme: String, epoch: UInt64 = 1,
                                      _ body: @escaping @Sendable (ProcessGroup, ZMQTransport) throws -> T) throws -> [T] {
        let shared = try ZMQContext()
        let rendezvous = Rendezvous()
        let tag = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        return try onThreads(n) { rank in
            let context = scheme == "inproc" ? shared : try ZMQContext()
            let transport = try ZMQTransport(context: context, rank: rank, worldSize: n,
                                             bind: endpoint(scheme, tag: tag, rank: rank))
            defer { transport.close() }
            rendezvous.publish(rank, transport.boundEndpoint)
            try transport.connect(successor: try rendezvous.lookup((rank + 1) % n))
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: transport, epoch: epoch, jobID: 3,
                                         options: quietOptions())
            let result = try body(group, transport)
            // Keep the sockets open until every rank is done with its last receive.
            try group.barrier(deadline: .now + .seconds(10))
            return result
        }.map { try $0.get() }
    }

    @Test(arguments: ["inproc", "tcp", "ipc"])
    func allCollectivesOverEachTransport(scheme: String) throws {
        let n = 3
        for (kind, count) in [(CollectiveCheck.Kind.allReduce, 1_000_003), (.allReduce, 2), (.reduceScatter, 13),
                              (.allGather, 300_007), (.broadcast, 300_007), (.scalars, 3), (.barrier, 0)] {
            let digests = try Self.withRing(n, scheme: scheme) { group, _ in
                try CollectiveCheck.run(kind, group: group, count: count, seed: 11, root: 1,
                                        deadline: .now + .seconds(20)).digest
            }
            for rank in 0..<n {
                let expected = CollectiveCheck.expectedDigest(kind, rank: rank, worldSize: n, count: count, seed: 11, root: 1)
                #expect(digests[rank] == expected, "\(scheme) \(kind) count \(count) rank \(rank)")
            }
        }
    }

    @Test func manyCollectivesInOneGroupKeepSequenceNumbersInLockstep() throws {
        let results = try Self.withRing(2, scheme: "inproc") { group, _ -> Bool in
            var ok = true
            for i in 0..<50 {
                let kind: CollectiveCheck.Kind = [.allReduce, .scalars, .broadcast, .allGather][i % 4]
                let d = try CollectiveCheck.run(kind, group: group, count: 5 + i, seed: UInt64(i), deadline: .now + .seconds(10))
                ok = ok && d.digest == CollectiveCheck.expectedDigest(kind, rank: group.rank, worldSize: 2, count: 5 + i, seed: UInt64(i))
            }
            return ok && group.sequence == 50
        }
        #expect(results == [true, true])
    }

    @Test func staleEpochFramesFromAnOldConnectionAreDropped() throws {
        let tag = "stale-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        let context = try ZMQContext()
        let rendezvous = Rendezvous()
        let injected = Mutex(false)
        let results = try onThreads(2) { rank -> (UInt64, Int) in
            let transport = try ZMQTransport(context: context, rank: rank, worldSize: 2,
                                             bind: "inproc://\(tag)-\(rank)")
            defer { transport.close() }
            rendezvous.publish(rank, transport.boundEndpoint)
            var leftover: ZMQSocket?
            defer { leftover?.close() }
            if rank == 0 {
                // A left-over sender from epoch 1 still connected to rank 0's endpoint.
                let old = try ZMQSocket(context: context, kind: .push)
                leftover = old
                try old.connect("inproc://\(tag)-0")
                for seq: UInt64 in 0..<5 {
                    let payload = [Float](repeating: 1e9, count: 100)
                    var header = FrameHeader(kind: .data, elementType: .float32, operation: .allReduce, jobID: 3, epoch: 1,
                                             sequence: seq, sourceRank: 1, hop: 0, chunk: 0, segment: 0)
                    payload.withUnsafeBytes { header.seal(payload: $0, checksum: true) }
                    let h = ZMQMessage(), p = ZMQMessage()
                    try h.reset(byteCount: 64)
                    header.encode(into: h.mutableBytes)
                    try p.reset(byteCount: 400)
                    payload.withUnsafeBytes { p.mutableBytes.copyMemory(from: $0) }
                    _ = try old.send(h, more: true, dontWait: false)
                    _ = try old.send(p, dontWait: false)
                }
                injected.withLock { $0 = true }
            }
            try transport.connect(successor: try rendezvous.lookup((rank + 1) % 2))
            while !injected.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.001) }
            let group = try ProcessGroup(rank: rank, worldSize: 2, transport: transport, epoch: 2, jobID: 3,
                                         options: quietOptions())
            let d = try CollectiveCheck.run(.allReduce, group: group, count: 1_000, seed: 5, deadline: .now + .seconds(10))
            // PULL fair-queues the two connections, so by the time rank 0 has read 5 more current
            // frames it has read (and dropped) all 5 stale ones.
            for _ in 0..<5 { try group.barrier(deadline: .now + .seconds(10)) }
            return (d.digest, group.droppedFrames)
        }.map { try $0.get() }
        let expected = CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: 2, count: 1_000, seed: 5)
        #expect(results.allSatisfy { $0.0 == expected })
        #expect(results[0].1 == 5)
    }

    @Test func aGroupReformsOnTheSameEndpointsWithANewEpoch() throws {
        let n = 3
        let epoch1Endpoints = Mutex<[Int: String]>([:])
        let rendezvous = Rendezvous()
        let first = try onThreads(n) { rank -> UInt64 in
            let transport = try ZMQTransport(context: try ZMQContext(), rank: rank, worldSize: n, bind: "tcp://127.0.0.1:*")
            defer { transport.close() }
            epoch1Endpoints.withLock { $0[rank] = transport.boundEndpoint }
            rendezvous.publish(rank, transport.boundEndpoint)
            try transport.connect(successor: try rendezvous.lookup((rank + 1) % n))
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: transport, epoch: 1, jobID: 3, options: quietOptions())
            let d = try CollectiveCheck.run(.allReduce, group: group, count: 100_003, seed: 1, deadline: .now + .seconds(20))
            try group.barrier(deadline: .now + .seconds(10))
            return d.digest
        }.map { try $0.get() }
        let endpoints = epoch1Endpoints.withLock { $0 }
        // Same processes' worth of ranks, same ports, next epoch.
        let second = try onThreads(n) { rank -> UInt64 in
            let transport = try ZMQTransport(context: try ZMQContext(), rank: rank, worldSize: n, bind: endpoints[rank]!)
            defer { transport.close() }
            try transport.connect(successor: endpoints[(rank + 1) % n]!)
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: transport, epoch: 2, jobID: 3, options: quietOptions())
            let d = try CollectiveCheck.run(.allReduce, group: group, count: 100_003, seed: 2, deadline: .now + .seconds(20))
            try group.barrier(deadline: .now + .seconds(10))
            return d.digest
        }.map { try $0.get() }
        #expect(first == Array(repeating: CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: n, count: 100_003, seed: 1), count: n))
        #expect(second == Array(repeating: CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: n, count: 100_003, seed: 2), count: n))
    }

    @Test func badEndpointsAreTypedErrors() throws {
        let context = try ZMQContext()
        #expect(throws: CommError.self) {
            _ = try ZMQTransport(context: context, rank: 0, worldSize: 1, bind: "udp://127.0.0.1:1")
        }
        let first = try ZMQTransport(context: context, rank: 0, worldSize: 1, bind: "tcp://127.0.0.1:*")
        defer { first.close() }
        do {
            _ = try ZMQTransport(context: context, rank: 0, worldSize: 1, bind: first.boundEndpoint)
            Issue.record("binding the same port twice should fail")
        } catch let error as CommError {
            #expect(error.code == .transport)
            #expect(error.underlying?.contains("errno") == true)
        }
        #expect(throws: ZMQError.self) { _ = try ZMQSocket(context: context, kind: .push).connect("nonsense") }
    }

    @Test func zeroCopyPayloadIsReleasedExactlyOnce() throws {
        let context = try ZMQContext()
        let released = Mutex(0)
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { bytes.deallocate() }
        bytes.initializeMemory(as: UInt8.self, repeating: 7)
        let pull = try ZMQSocket(context: context, kind: .pull)
        try pull.bind("inproc://zc-\(ProcessInfo.processInfo.processIdentifier)")
        let push = try ZMQSocket(context: context, kind: .push)
        try push.connect("inproc://zc-\(ProcessInfo.processInfo.processIdentifier)")
        let message = ZMQMessage()
        try message.reset(borrowing: UnsafeRawBufferPointer(bytes)) { released.withLock { $0 += 1 } }
        #expect(try push.send(message, dontWait: false))
        let received = ZMQMessage()
        #expect(try pull.receive(received, dontWait: false))
        #expect(received.count == 1 << 20 && received.bytes[12345] == 7)
        #expect(released.withLock { $0 } == 0)
        received.clear()
        #expect(released.withLock { $0 } == 1)
        // A message closed unsent is released too.
        try message.reset(borrowing: UnsafeRawBufferPointer(bytes)) { released.withLock { $0 += 1 } }
        message.clear()
        #expect(released.withLock { $0 } == 2)
    }

    @Test func curveEncryptedRingWorks() throws {
        guard ZMQContext.has("curve") else { return }
        let n = 2
        let keys = try (0..<n).map { _ in try ZMQCurveKeyPair.generate() }
        let tag = "curve-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        let digests = try onThreads(n) { rank -> UInt64 in
            var options = ZMQTransport.Options()
            options.curve = .init(own: keys[rank], successorPublicKey: keys[(rank + 1) % n].publicKey)
            let transport = try ZMQTransport(context: try ZMQContext(), rank: rank, worldSize: n,
                                             bind: "ipc:///tmp/zerotrain-\(tag)-\(rank)", options: options)
            defer { transport.close() }
            try transport.connect(successor: "ipc:///tmp/zerotrain-\(tag)-\((rank + 1) % n)")
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: transport, epoch: 1, jobID: 1,
                                         options: quietOptions())
            let d = try CollectiveCheck.run(.allReduce, group: group, count: 100_000, seed: 2, deadline: .now + .seconds(20))
            try group.barrier(deadline: .now + .seconds(10))
            return d.digest
        }.map { try $0.get() }
        let expected = CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: n, count: 100_000, seed: 2)
        #expect(digests == [expected, expected])
    }
}
