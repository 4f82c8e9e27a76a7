/// FNV-1a 64: a fast, stable hash for checksums that compare bytes across processes (parameter
/// checksums of the divergence guard, config fingerprints, test digests). Not cryptographic.
public struct FNV1a: Sendable, Equatable {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    public init() {}

    public mutating func add(_ byte: UInt8) { value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }

    public mutating func add(_ bytes: some Sequence<UInt8>) { for b in bytes { add(b) } }

    /// The little-endian bytes of a value's bit pattern.
    public mutating func add<T: FixedWidthInteger>(littleEndian value: T) {
        var bits = value
        for _ in 0..<(T.bitWidth / 8) {
            add(UInt8(truncatingIfNeeded: bits))
            bits >>= 8
        }
    }

    /// The bits of every float, in order.
    public mutating func add(_ values: UnsafeBufferPointer<Float>) { for v in values { add(littleEndian: v.bitPattern) } }

    public static func hash(_ values: UnsafeBufferPointer<Float>) -> UInt64 {
        var h = FNV1a()
        h.add(values)
        return h.value
    }
}
