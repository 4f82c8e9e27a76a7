/// fp32 <-> bfloat16 conversion for the optional bf16 gradient wire format.
///
/// bf16 keeps fp32's sign and exponent and the top 7 mantissa bits: half the bytes on the wire,
/// about 3 significant digits. Rounding is to nearest, ties to even; NaN stays NaN.
public enum BFloat16 {
    @inline(__always)
    public static func encode(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    @inline(__always)
    public static func decode(_ half: UInt16) -> Float {
        Float(bitPattern: UInt32(half) << 16)
    }

    /// `value` rounded to the nearest bf16, as fp32.
    @inline(__always)
    public static func round(_ value: Float) -> Float { decode(encode(value)) }

    /// Writes `source.count` bf16 values (2 bytes each) into `destination`.
    public static func encode(_ source: UnsafeBufferPointer<Float>, into destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= source.count * 2, "bf16 destination too small")
        guard let base = destination.baseAddress else { return }
        for i in 0..<source.count {
            base.storeBytes(of: encode(source[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
        }
    }
}
