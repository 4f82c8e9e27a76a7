import Comm
import Common
import Testing
import ZeroTrainTestKit

/// The fused receive passes (CRC-32C computed while a payload is reduced or copied) and what the
/// ring does when the check fails.
@Suite("Fused payload CRC", .serialized)
struct FusedPayloadCheckTests {
    /// Random fp32 bit patterns that are finite (so `==` on the bits is the whole story).
    static func floats(_ count: Int, _ rng: inout SplitMix) -> [Float] {
        (0..<count).map { _ in Float(Int32(truncatingIfNeeded: rng.next())) / 1024 }
    }

    @Test func accumulateAndCopyMatchTheSeparatePassesAtEveryLengthAndOffset() {
        var rng = SplitMix(seed: 11)
        // Short lengths (tails), and long ones (the three-stretch path).
        let lengths = (0..<120).map { _ in Int(rng.next() % 64) } + (0..<40).map { _ in 3_000 + Int(rng.next() % 70_000) }
        for (trial, count) in lengths.enumerated() {
            let offset = Int(rng.next() % 4)
            let incoming = Self.floats(count, &rng)
            let start = Self.floats(count, &rng)
            // The payload at an arbitrary byte offset, as libzmq may hand it over.
            var raw = [UInt8](repeating: 0, count: count * 4 + offset)
            incoming.withUnsafeBytes { src in
                raw.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: offset).copyMemory(from: src.baseAddress!, byteCount: count * 4) }
            }
            let divisor: Float = trial % 3 == 0 ? 3 : 1
            let expectedSum = zip(incoming, start).map { divisor == 1 ? $0 + $1 : ($0 + $1) / divisor }
            let expectedCRC = incoming.withUnsafeBytes { CRC32C.software($0) }
            let expectedResultCRC = expectedSum.withUnsafeBytes { CRC32C.software($0) }

            raw.withUnsafeBytes { all in
                let payload = UnsafeRawBufferPointer(rebasing: all[offset...])
                var target = start
                let crc = target.withUnsafeMutableBufferPointer { CRC32C.accumulate(payload, into: $0, divisor: divisor) }
                #expect(crc == expectedCRC, "count \(count) offset \(offset)")
                #expect(target.map(\.bitPattern) == expectedSum.map(\.bitPattern), "count \(count)")

                var again = start
                var resultCRC: UInt32 = 0
                let crc2 = again.withUnsafeMutableBufferPointer {
                    CRC32C.accumulate(payload, into: $0, divisor: divisor, resultCRC: &resultCRC)
                }
                #expect(crc2 == expectedCRC && resultCRC == expectedResultCRC, "count \(count)")
                #expect(again.map(\.bitPattern) == expectedSum.map(\.bitPattern), "count \(count)")

                // Copy, also of byte lengths that are not whole floats.
                let bytes = max(0, count * 4 - trial % 4)
                var copied = [UInt8](repeating: 0, count: bytes)
                let part = UnsafeRawBufferPointer(rebasing: payload[..<bytes])
                let crc3 = copied.withUnsafeMutableBytes { CRC32C.copy(part, into: $0) }
                #expect(crc3 == CRC32C.software(part) && copied == Array(part), "copy of \(bytes) bytes")
            }
        }
    }

    /// Flips one bit in the payload of the `corrupt`-th borrowed data frame this rank sends.
    final class CorruptingTransport: Transport {
        let inner: InMemoryTransport
        let corrupt: Int
        private var sent = 0

        init(_ inner: InMemoryTransport, corrupt: Int) {
            self.inner = inner
            self.corrupt = corrupt
        }

        func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
                  deadline: ContinuousClock.Instant) throws {
            defer { sent += 1 }
            guard sent == corrupt, payload.count > 0 else {
                return try inner.send(header: header, payload: payload, release: release, deadline: deadline)
            }
            var bytes = Array(payload)
            release()
            bytes[bytes.count / 2] ^= 0x04
            try inner.send(payloadByteCount: bytes.count, deadline: deadline) { out in
                bytes.withUnsafeBytes { out.copyMemory(from: $0) }
                return header
            }
        }

        func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
                  fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws {
            try inner.send(payloadByteCount: payloadByteCount, deadline: deadline, fill: fill)
        }

        func receive<R>(deadline: ContinuousClock.Instant,
                        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
            try inner.receive(deadline: deadline, body)
        }

        func trySend(header: FrameHeader, payload: [UInt8]) { inner.trySend(header: header, payload: payload) }
        func close() { inner.close() }
    }

    /// N = 3, 4 segments per chunk, so rank 0 sends 16 data frames: 0..<4 reduce-scatter hop 0,
    /// 4..<8 the last reduce hop, 8..<12 its own finished chunk (CRC from the fused reduce),
    /// 12..<16 forwarded all-gather segments (CRC passed on).
    @Test(arguments: [(0, ProcessGroup.ReduceOp.sum), (5, .average), (9, .average), (14, .sum)])
    func aCorruptedSegmentFailsTheAllReduceWithAMalformedFrameNamingTheSender(corrupt: Int, op: ProcessGroup.ReduceOp) throws {
        let n = 3, count = 300_001
        let fabric = InMemoryFabric(worldSize: n)
        let results = onThreads(n) { rank -> CommError? in
            let inner = fabric.transport(rank: rank)
            let transport: any Transport = rank == 0 ? CorruptingTransport(inner, corrupt: corrupt) : inner
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: transport, epoch: 1, jobID: 5,
                                         options: quietOptions())
            do {
                _ = try CollectiveCheck.run(.allReduce, group: group, count: count, seed: 3, op: op,
                                            deadline: .now + .seconds(3))
                return nil
            } catch let error as CommError { return error }
        }
        let receiver = try #require(try results[1].get())
        #expect(receiver.code == .malformedFrame && receiver.peer == 0, "\(receiver)")
        #expect(receiver.description.contains("payload checksum mismatch"))
    }

    @Test func aCorruptedBroadcastSegmentIsCaughtToo() throws {
        let n = 2
        let fabric = InMemoryFabric(worldSize: n)
        let results = onThreads(n) { rank -> CommError? in
            let inner = fabric.transport(rank: rank)
            let transport: any Transport = rank == 0 ? CorruptingTransport(inner, corrupt: 2) : inner
            let group = try ProcessGroup(rank: rank, worldSize: n, transport: transport, epoch: 1, jobID: 5,
                                         options: quietOptions())
            do {
                _ = try CollectiveCheck.run(.broadcast, group: group, count: 100_000, seed: 3, root: 0,
                                            deadline: .now + .seconds(3))
                return nil
            } catch let error as CommError { return error }
        }
        let receiver = try #require(try results[1].get())
        #expect(receiver.code == .malformedFrame && receiver.peer == 0, "\(receiver)")
    }
}
