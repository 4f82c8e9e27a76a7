/// The two 8-bit floating-point formats of the OCP / NVIDIA FP8 specification. e4m3 (bias 7, no
/// inf, largest finite 448) for forward operands, e5m2 (bias 15, IEEE-like, largest finite
/// 57344) for gradients, which need the range more than the digits.
public enum FP8Format: String, Sendable, CaseIterable {
    case e4m3, e5m2

    public var mantissaBits: Int { self == .e4m3 ? 3 : 2 }
    var exponentBias: Int { self == .e4m3 ? 7 : 15 }
    /// The exponent of the smallest normal value (2^minExponent); below it the values are subnormal,
    /// multiples of 2^(minExponent − mantissaBits).
    public var minExponent: Int { 1 - exponentBias }
    /// The largest finite value.
    public var max: Float { self == .e4m3 ? 448 : 57344 }
}

/// fp8 as this CPU can have it: simulated. No CPU here has fp8 arithmetic, so values are rounded
/// to fp8 (round to nearest, ties to even, saturating at ±max) and kept and multiplied in fp32.
/// Infinities and NaN are not saturated: they pass through, so a divergence stays visible.
public enum FP8 {
    /// `value` rounded to the nearest value of `format`, saturating: anything finite beyond ±max
    /// becomes ±max.
    @inline(__always)
    public static func round(_ value: Float, _ format: FP8Format) -> Float {
        let a = value.magnitude
        guard a < format.max else { return a.isFinite ? Float(signOf: value, magnitudeOf: format.max) : value }
        // The spacing of fp8 values around `a`: 2^(e − mantissaBits), e clamped at the subnormal range.
        let e = Swift.max(Int((a.bitPattern >> 23) & 0xff) - 127, format.minExponent)
        let inverse = Float(bitPattern: UInt32(127 - e + format.mantissaBits) << 23)
        let spacing = Float(bitPattern: UInt32(127 + e - format.mantissaBits) << 23)
        let r = Swift.min((a * inverse).rounded(.toNearestOrEven) * spacing, format.max)
        return Float(signOf: value, magnitudeOf: r)
    }

    /// The fp8 code (sign, exponent, mantissa bits) of `value` rounded to `format`. A NaN (and, in
    /// e4m3, which has none, an infinity) becomes the format's NaN code.
    public static func encode(_ value: Float, _ format: FP8Format) -> UInt8 {
        let r = round(value, format), m = format.mantissaBits
        let sign: UInt8 = r.sign == .minus ? 0x80 : 0
        if r.isNaN || (r.isInfinite && format == .e4m3) { return sign | (format == .e4m3 ? 0x7f : 0x7e) }
        if r.isInfinite { return sign | 0x7c }
        let a = r.magnitude
        if a == 0 { return sign }
        let e = Int((a.bitPattern >> 23) & 0xff) - 127
        if e < format.minExponent {
            return sign | UInt8(a * Float(bitPattern: UInt32(127 - format.minExponent + m) << 23))
        }
        let mantissa = UInt8((a.bitPattern >> UInt32(23 - m)) & UInt32((1 << m) - 1))
        return sign | UInt8((e + format.exponentBias) << m) | mantissa
    }

    public static func decode(_ code: UInt8, _ format: FP8Format) -> Float {
        let m = format.mantissaBits
        let e = Int(code & 0x7f) >> m, mantissa = Int(code) & ((1 << m) - 1)
        let negative = code & 0x80 != 0
        let magnitude: Float
        switch format {
        case .e4m3 where e == 15 && mantissa == 7: return .nan
        case .e5m2 where e == 31: magnitude = mantissa == 0 ? .infinity : .nan
        default:
            magnitude = e == 0
                ? Float(mantissa) * Float(sign: .plus, exponent: format.minExponent - m, significand: 1)
                : Float(sign: .plus, exponent: e - format.exponentBias, significand: 1 + Float(mantissa) / Float(1 << m))
        }
        return negative ? -magnitude : magnitude
    }

    /// Every code's value, by format (decoding a weight copy is a table lookup).
    static let e4m3Values = (0...255).map { decode(UInt8($0), .e4m3) }
    static let e5m2Values = (0...255).map { decode(UInt8($0), .e5m2) }

    /// destination = round(source · scale) / scale elementwise (the fp8 value the product sees,
    /// back in the tensor's own units); returns the largest finite |source| (the amax).
    public static func quantize(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<Float>, count: Int,
                                scale: Float, format: FP8Format) -> Float {
        let inverse = 1 / scale
        var amax: Float = 0
        for i in 0..<count {
            let x = source[i], a = x.magnitude
            if a > amax && a.isFinite { amax = a }
            destination[i] = round(x * scale, format) * inverse
        }
        return amax
    }

    /// codes = fp8 codes of source · scale; returns the largest finite |source|.
    public static func encode(_ source: UnsafePointer<Float>, to codes: UnsafeMutablePointer<UInt8>, count: Int,
                              scale: Float, format: FP8Format) -> Float {
        var amax: Float = 0
        for i in 0..<count {
            let x = source[i], a = x.magnitude
            if a > amax && a.isFinite { amax = a }
            codes[i] = encode(x * scale, format)
        }
        return amax
    }

    /// destination = value(codes) / scale.
    public static func decode(_ codes: UnsafePointer<UInt8>, to destination: UnsafeMutablePointer<Float>, count: Int,
                              scale: Float, format: FP8Format) {
        let inverse = 1 / scale
        let values = format == .e4m3 ? e4m3Values : e5m2Values
        values.withUnsafeBufferPointer { v in
            for i in 0..<count { destination[i] = v[Int(codes[i])] * inverse }
        }
    }
}

/// Per-tensor delayed scaling, Transformer Engine's default recipe (margin 0): the history holds
/// one amax per step — the largest finite |x| over all of that step's casts of the tensor — for
/// the last `historyLength` steps, and every cast of a step uses the same scale, max / max(history)
/// (1 while the history holds no amax above 0), made only of earlier steps' amaxes. The owner
/// closes a step with `record`, giving the step's amax (its own `stepAmax`, or that maximum over
/// all ranks of a job). One object per tensor of one model, used by one thread at a time.
public final class FP8Scaling {
    public let format: FP8Format
    private var history: [Float]
    private var next = 0
    /// The scale every cast of the current step uses (backward re-rounds a forward operand with it).
    public private(set) var scale: Float = 1
    /// The largest amax of the current step's casts so far (0: none).
    public private(set) var stepAmax: Float = 0

    public init(format: FP8Format, historyLength: Int) {
        precondition(historyLength >= 1, "an amax history holds at least one value")
        self.format = format
        history = Array(repeating: 0, count: historyLength)
    }

    /// Casts with the step's scale; `body` returns the cast's amax, which joins the step's.
    /// `unit`: a factor the values carry beyond the tensor's own units (an output gradient's
    /// 1 / accumulation): the cast uses scale / unit and the amax joins divided by `unit`, so the
    /// rounding and the history do not depend on it (exactly, for a power of two).
    public func cast(unit: Float = 1, _ body: (_ scale: Float) -> Float) {
        let amax = body(scale / unit) / unit
        if amax > stepAmax { stepAmax = amax }
    }

    /// Closes a step: `amax` (the step's, ≥ `stepAmax` when reduced over ranks) enters the history,
    /// the oldest leaves, and the next step's scale is made from it.
    public func record(_ amax: Float) {
        history[next] = amax
        next = (next + 1) % history.count
        stepAmax = 0
        updateScale()
    }

    /// Forgets the casts made since the last `record` (outside a training step: evaluation).
    public func discardStep() { stepAmax = 0 }

    /// The amaxes recorded, oldest first (what a checkpoint keeps).
    public var amaxHistory: [Float] { Array(history[next...] + history[..<next]) }

    /// Restores a history (oldest first, `historyLength` values) and the scale it gives, with no
    /// step open.
    public func restore(_ amaxes: [Float]) {
        precondition(amaxes.count == history.count, "an amax history of \(history.count) values, got \(amaxes.count)")
        history = amaxes
        next = 0
        stepAmax = 0
        updateScale()
    }

    private func updateScale() {
        let amax = history.max() ?? 0
        scale = amax > 0 ? format.max / amax : 1
    }
}
