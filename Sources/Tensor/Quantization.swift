import Foundation

/// The affine map of 8-bit quantization: real = scale · (q − zeroPoint).
public struct QuantizationParameters: Sendable, Equatable {
    public var scale: Float
    public var zeroPoint: Int32

    public init(scale: Float, zeroPoint: Int32) {
        self.scale = scale
        self.zeroPoint = zeroPoint
    }
}

/// PyTorch's dynamic quantization arithmetic (`torch.ao.quantization.quantize_dynamic` with the
/// default qconfig on x86, whose `quantized::linear_dynamic` runs on fbgemm).
///
/// * Weights: int8, symmetric (zero point 0), per tensor or per output channel:
///   scale = max(|min(w, 0)|, max(w, 0)) / 127.5, at least fp32's epsilon (2⁻²³);
///   q = clamp(round(w · (1/scale)), −128, 127), rounding half to even (MinMaxObserver /
///   PerChannelMinMaxObserver with `per_tensor_symmetric` / `per_channel_symmetric`, then
///   `quantize_per_tensor` / `quantize_per_channel`).
/// * Activations: uint8, affine, per call from the whole input's min and max, with fbgemm's
///   `reduce_range` (the quantized Linear module passes `reduce_range=True`): the range is
///   [0, 127], not [0, 255], which keeps the u8 × s8 pair sums of AVX2's vpmaddubsw from saturating.
///   This is `ChooseQuantizationParams` of ATen's QuantUtils.h: the interval is widened to
///   contain 0; scale = (max − min) / 127 in double, then fp32 (0.1 when it is 0 or its reciprocal
///   overflows); a scale below 6.1·10⁻⁵ is raised to it with min and max scaled along; the zero
///   point is the rounded (half to even) one of qmin − min/scale and qmax − max/scale with the
///   smaller error, clamped to [0, 127]. q = clamp(round(x · (1/scale)) + zeroPoint, 0, 255).
public enum Quantization {
    /// qmin, qmax of the activations: uint8 halved by `reduce_range`.
    public static let activationMin: Int32 = 0
    public static let activationMax: Int32 = 127
    /// fbgemm's `SMALL_SCALE_THRESHOLD`.
    static let smallScale: Float = 6.1e-5

    /// `ChooseQuantizationParams(min, max, 0, 255, reduce_range: true)`.
    public static func activationParameters(min inputMin: Float, max inputMax: Float) -> QuantizationParameters {
        let qmin = activationMin, qmax = activationMax
        var lo = Swift.min(inputMin, 0), hi = Swift.max(inputMax, 0)
        var scale = (Double(hi) - Double(lo)) / Double(qmax - qmin)
        if Float(scale) == 0 || (1 / Float(scale)).isInfinite { scale = 0.1 }
        if scale < Double(smallScale) {
            let original = Float(scale)
            scale = Double(smallScale)
            if lo == 0 {
                hi = smallScale * Float(qmax - qmin)
            } else if hi == 0 {
                lo = -smallScale * Float(qmax - qmin)
            } else {
                let amplifier = smallScale / original
                lo *= amplifier
                hi *= amplifier
            }
        }
        let fromMin = Double(qmin) - Double(lo) / scale, fromMax = Double(qmax) - Double(hi) / scale
        let errorMin = Double(abs(qmin)) - abs(Double(lo) / scale), errorMax = Double(abs(qmax)) - abs(Double(hi) / scale)
        let initial = errorMin < errorMax ? fromMin : fromMax
        let zero: Int32 = initial < Double(qmin) ? qmin : initial > Double(qmax) ? qmax : Int32(initial.rounded(.toNearestOrEven))
        return QuantizationParameters(scale: Float(scale), zeroPoint: zero)
    }

    /// x (count) → its min and max, and its uint8 quantization into `q` (count) with
    /// `activationParameters`. Returns the parameters used.
    ///
    /// Plain loops the compiler vectorises: min/max as compares, rounding half to even by adding
    /// and subtracting 1.5 · 2²³ (exact for |x/scale| < 2²²), and the byte taken from the bits of
    /// the clamped value plus 1.5 · 2²³ (whose last mantissa bits are the integer).
    @discardableResult
    public static func quantizeActivations(_ x: UnsafePointer<Float>, count: Int, into q: UnsafeMutablePointer<UInt8>) -> QuantizationParameters {
        var lo: Float = 0, hi: Float = 0
        if count > 0 {
            lo = x[0]
            hi = x[0]
            for i in 0..<count {
                let v = x[i]
                lo = v < lo ? v : lo
                hi = v > hi ? v : hi
            }
        }
        let p = activationParameters(min: lo, max: hi)
        let inverse = 1 / p.scale, zero = Float(p.zeroPoint)
        let magic: Float = 12_582_912  // 1.5 · 2²³
        for i in 0..<count {
            var v = ((x[i] * inverse + magic) - magic) + zero
            v = v < 0 ? 0 : v
            v = v > 255 ? 255 : v
            q[i] = UInt8(truncatingIfNeeded: (v + magic).bitPattern)
        }
        return p
    }

    /// w (rows, cols) → int8 `q` (rows, cols) and the scales: one (per tensor) or `rows` (per
    /// output channel), symmetric, as PyTorch's default and per-channel dynamic qconfigs do.
    public static func quantizeWeights(_ w: UnsafePointer<Float>, rows: Int, cols: Int, perChannel: Bool,
                                       into q: UnsafeMutablePointer<Int8>) -> [Float] {
        func scale(_ start: UnsafePointer<Float>, _ count: Int) -> Float {
            var lo: Float = 0, hi: Float = 0
            for i in 0..<count { lo = Swift.min(lo, start[i]); hi = Swift.max(hi, start[i]) }
            return Swift.max(Swift.max(-lo, hi) / 127.5, Float.ulpOfOne)
        }
        // Multiplied by the reciprocal, as ATen's quantize_val does (dividing rounds ~0.1% of values the other way).
        func quantize(_ start: UnsafePointer<Float>, _ count: Int, _ s: Float, _ out: UnsafeMutablePointer<Int8>) {
            let inverse = 1 / s
            for i in 0..<count { out[i] = Int8(Swift.min(127, Swift.max(-128, (start[i] * inverse).rounded(.toNearestOrEven)))) }
        }
        if perChannel {
            return (0..<rows).map { r in
                let s = scale(w + r * cols, cols)
                quantize(w + r * cols, cols, s, q + r * cols)
                return s
            }
        }
        let s = scale(w, rows * cols)
        quantize(w, rows * cols, s, q)
        return [s]
    }
}
