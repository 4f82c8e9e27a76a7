import Comm
import Common
import Testing

@Suite("Wire codec")
struct FrameCodecTests {
    @Test func crc32cKnownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func crc32cIsIncrementalAndAlignmentIndependent() {
        var rng = SplitMix(seed: 1)
        let bytes = (0..<4099).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = CRC32C.checksum(bytes)
        for cut in [0, 1, 3, 7, 8, 9, 1000, 4098] {
            let a = bytes[..<cut].withUnsafeBytes { CRC32C.checksum($0) }
            let b = bytes[cut...].withUnsafeBytes { CRC32C.checksum($0, continuing: a) }
            #expect(b == whole)
        }
        // Same bytes at an odd address.
        var shifted = [UInt8](repeating: 0, count: 1) + bytes
        let odd = shifted.withUnsafeMutableBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[1...])) }
        shifted.removeAll()
        #expect(odd == whole)
    }

    /// Bit-at-a-time CRC-32C: the definition, to check the sliced and interleaved paths against.
    static func referenceCRC(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    @Test func crc32cMatchesTheBitwiseDefinitionAtEveryLengthAndOffset() {
        var rng = SplitMix(seed: 3)
        let bytes = (0..<40_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for _ in 0..<200 {
            let start = Int(rng.next() % 64)
            let length = Int(rng.next() % UInt64(bytes.count - start))
            let slice = bytes[start..<(start + length)]
            let expected = Self.referenceCRC(slice)
            #expect(slice.withUnsafeBytes { CRC32C.checksum($0) } == expected, "offset \(start) length \(length)")
            #expect(slice.withUnsafeBytes { CRC32C.software($0) } == expected, "offset \(start) length \(length)")
        }
    }

    static func sampleFrame(payloadCount: Int = 40, type: FrameHeader.ElementType = .float32) -> ([UInt8], [UInt8]) {
        let payload = (0..<payloadCount).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        var header = FrameHeader(kind: .data, elementType: type, operation: .allReduce, jobID: 42, epoch: 7,
                                 sequence: 9, sourceRank: 3, hop: 2, chunk: 1, segment: 5)
        payload.withUnsafeBytes { header.seal(payload: $0, checksum: true) }
        return (header.encoded, payload)
    }

    @Test func roundTrip() throws {
        let (h, p) = Self.sampleFrame()
        let decoded = try FrameHeader.decode(header: h, payload: p)
        #expect(decoded.jobID == 42 && decoded.epoch == 7 && decoded.sequence == 9 && decoded.sourceRank == 3)
        #expect(decoded.hop == 2 && decoded.chunk == 1 && decoded.segment == 5 && decoded.payloadLength == 40)
        #expect(decoded.operation == .allReduce && decoded.kind == .data && decoded.elementType == .float32)
        #expect(h.count == FrameHeader.size)
    }

    @Test func rejectsEachKindOfDamageWithATypedError() {
        let (h, p) = Self.sampleFrame()
        func code(_ header: [UInt8], _ payload: [UInt8]) -> CommError.Code? {
            do { _ = try FrameHeader.decode(header: header, payload: payload); return nil } catch { return error.code }
        }
        var wrongMagic = h; wrongMagic[0] ^= 1
        var wrongVersion = h; wrongVersion[4] = 9
        #expect(code(wrongMagic, p) == .malformedFrame)
        #expect(code(wrongVersion, p) == .malformedFrame)
        #expect(code(Array(h.prefix(63)), p) == .malformedFrame)
        #expect(code(h, Array(p.prefix(36))) == .malformedFrame)
        var flipped = p; flipped[3] ^= 0x10
        #expect(code(h, flipped) == .malformedFrame)
        // A well-formed header (valid CRC) announcing an impossible kind, length or element size.
        for mutate in [{ (x: inout FrameHeader) in x.payloadLength = 41 }, { x in x.payloadLength = UInt32(1) << 31 }] {
            var header = try! FrameHeader.decode(header: h, payload: p)
            mutate(&header)
            #expect(code(header.encoded, p) == .malformedFrame)
        }
        let (oddHeader, oddPayload) = Self.sampleFrame(payloadCount: 42)   // not a whole number of fp32
        #expect(code(oddHeader, oddPayload) == .malformedFrame)
        var badKind = h; badKind[5] = 77
        #expect(code(badKind, p) == .malformedFrame)
    }

    /// Thousands of seeded random, truncated and bit-flipped frames: the decoder must return a
    /// typed error (or, for a flip it cannot see, a header) and never crash or read out of bounds.
    @Test(arguments: 0..<4)
    func fuzzNeverCrashes(seedBlock: Int) {
        var rng = SplitMix(seed: UInt64(seedBlock) &* 1_000_003)
        var accepted = 0, rejected = 0
        for _ in 0..<2_000 {
            let (h, p) = Self.sampleFrame(payloadCount: Int(rng.next() % 64) * 8)
            var header = h, payload = p
            switch rng.next() % 5 {
            case 0:
                header = (0..<Int(rng.next() % 80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                payload = (0..<Int(rng.next() % 80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:
                header = Array(header.prefix(Int(rng.next() % 65)))
            case 2:
                payload = Array(payload.prefix(Int(rng.next() % UInt64(payload.count + 1))))
            case 3:
                let bit = Int(rng.next() % UInt64(header.count * 8))
                header[bit / 8] ^= UInt8(1 << (bit % 8))
            default:
                if !payload.isEmpty {
                    let bit = Int(rng.next() % UInt64(payload.count * 8))
                    payload[bit / 8] ^= UInt8(1 << (bit % 8))
                } else {
                    payload = [UInt8(truncatingIfNeeded: rng.next())]
                }
            }
            do {
                _ = try FrameHeader.decode(header: header, payload: payload)
                accepted += 1
            } catch {
                #expect(error.code == .malformedFrame)
                rejected += 1
            }
        }
        // Every mutation above breaks a checksum, a length or the magic: nothing damaged gets through
        // except a truncation that kept everything (prefix of full length).
        #expect(rejected > 1_500)
        #expect(accepted + rejected == 2_000)
    }

    @Test func bfloat16RoundsToNearestEven() {
        #expect(BFloat16.round(1.0) == 1.0)
        #expect(BFloat16.decode(BFloat16.encode(3.140625)) == 3.140625)
        #expect(BFloat16.round(1.0 + 1.0 / 512) == 1.0)          // tie → even
        #expect(BFloat16.round(1.0 + 3.0 / 512) == 1.0 + 4.0 / 512)  // tie → even (up)
        #expect(BFloat16.round(.nan).isNaN)
        #expect(BFloat16.round(.infinity) == .infinity)
    }
}

/// Deterministic 64-bit generator for seeded test cases.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
