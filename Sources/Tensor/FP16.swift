import CBF16

/// fp32 ↔ IEEE binary16 (fp16: 5 exponent bits, 10 mantissa bits; largest finite 65504, smallest
/// normal 2⁻¹⁴, smallest subnormal 2⁻²⁴). Rounding is to nearest, ties to even; values from 65520
/// up overflow to inf, tiny values become subnormals or zero, NaN stays NaN. F16C's conversion
/// instructions where the CPU has them, the same rounding in C elsewhere: one result on every CPU.
///
/// No CPU here multiplies fp16 (no AVX512_FP16, and oneDNN 2.6 has no f16 matmul for it): fp16
/// mixed precision rounds the operands to fp16 and multiplies them in fp32.
public enum FP16 {
    public static func convert(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<UInt16>, count: Int) {
        zt_f32_to_f16(source, destination, count)
    }

    public static func widen(_ source: UnsafePointer<UInt16>, to destination: UnsafeMutablePointer<Float>, count: Int) {
        zt_f16_to_f32(source, destination, count)
    }

    /// `destination[i]` = `source[i]` rounded to the nearest fp16, as fp32 (the two may be the same).
    public static func round(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<Float>, count: Int) {
        zt_round_f16(source, destination, count)
    }

    /// One value's fp16 bits.
    public static func encode(_ value: Float) -> UInt16 {
        var v = value, h: UInt16 = 0
        zt_f32_to_f16(&v, &h, 1)
        return h
    }

    public static func decode(_ bits: UInt16) -> Float {
        var h = bits, v: Float = 0
        zt_f16_to_f32(&h, &v, 1)
        return v
    }
}
