import Tensor

/// A bias-free linear layer with the weight stored [out, in] as PyTorch does. `varyingRows`:
/// the row count changes from call to call (an MoE expert's tokens).
///
/// In mixed precision (`mixed` given) the products take low-precision operands — the weight's
/// copy and the input (or output gradient) rounded in `mixed.scratch` — and accumulate and write
/// fp32, as `torch.autocast` does for `linear` (with an fp32 instead of a low-precision result).
/// bf16 multiplies on oneDNN's bf16 matmul; fp16 and fp8 (which no CPU here multiplies) widen
/// the rounded operands back to fp32 and multiply those.
///
/// `inputConverted` (bf16 only): `mixed.scratch` still holds `x` in bf16 from the call just
/// before, on the same `x` (q, k and v, or gate and up, read one input), so it is not converted
/// again. The result is the same bits either way.
///
/// In int8 inference (`int8` given) the product is PyTorch's dynamically quantized linear: x is
/// quantized to uint8 per call from its min and max (`Quantization.quantizeActivations`), multiplied
/// by the int8 weight with int32 accumulation, and written in fp32 as
/// y = (scale_x · scale_w) · Σ (q_x − zero_x) · q_w. The fp32 `weight` is then not read.
public enum Linear {
    /// x (rows, in) → y (rows, out) = x · Wᵀ; with `accumulate`, y += x · Wᵀ.
    public static func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                               rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false,
                               mixed: MixedOperands? = nil, int8: Int8Operands? = nil, varyingRows: Bool = false,
                               inputConverted: Bool = false) {
        if let int8 {
            let xq = int8.scratch.input(rows * inFeatures), scales = int8.scratch.scales(outFeatures)
            let p = Quantization.quantizeActivations(x, count: rows * inFeatures, into: xq)
            for j in 0..<outFeatures { scales[j] = p.scale * int8.scales[int8.perChannel ? j : 0] }
            GEMM.int8gemm(m: rows, n: outFeatures, k: inFeatures, a: xq, lda: inFeatures, aZeroPoint: p.zeroPoint,
                          b: int8.weight, ldb: inFeatures, scales: scales, accumulate: accumulate, c: y, ldc: outFeatures)
            return
        }
        if let mixed {
            if case .bf16(let w) = mixed.weight {
                let xb = mixed.scratch.input(rows * inFeatures)
                if !inputConverted { mixed.scratch.convert(x, to: xb, count: rows * inFeatures) }
                GEMM.bf16gemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                              a: xb, lda: inFeatures, b: w, ldb: inFeatures,
                              beta: accumulate ? 1 : 0, c: y, ldc: outFeatures, varyingShape: varyingRows)
                return
            }
            let xr = mixed.scratch.floatInput(rows * inFeatures), wr = mixed.scratch.floatWeight(outFeatures * inFeatures)
            mixed.roundInput(x, to: xr, count: rows * inFeatures, recording: true)
            mixed.widenWeight(to: wr, count: outFeatures * inFeatures)
            GEMM.sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                       a: xr, lda: inFeatures, b: wr, ldb: inFeatures,
                       beta: accumulate ? 1 : 0, c: y, ldc: outFeatures, varyingShape: varyingRows)
            return
        }
        GEMM.sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                   a: x, lda: inFeatures, b: weight, ldb: inFeatures,
                   beta: accumulate ? 1 : 0, c: y, ldc: outFeatures, varyingShape: varyingRows)
    }

    /// dy (rows, out) → dW (out, in) += dyᵀ · x, and dx (rows, in) = dy · W (+= with `accumulateInput`).
    /// `dx` may be nil when the input needs no gradient. `inputConverted` as in `forward`: the call
    /// just before converted the same `x` (its own `dy` is converted here in any case).
    public static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                                rows: Int, inFeatures: Int, outFeatures: Int, accumulateInput: Bool = false,
                                mixed: MixedOperands? = nil, varyingRows: Bool = false, inputConverted: Bool = false) {
        if let mixed {
            if case .bf16(let w) = mixed.weight {
                let xb = mixed.scratch.input(rows * inFeatures), dyb = mixed.scratch.gradient(rows * outFeatures)
                if !inputConverted { mixed.scratch.convert(x, to: xb, count: rows * inFeatures) }
                mixed.scratch.convert(dy, to: dyb, count: rows * outFeatures)
                GEMM.bf16gemm(transA: true, m: outFeatures, n: inFeatures, k: rows,
                              a: dyb, lda: outFeatures, b: xb, ldb: inFeatures,
                              beta: 1, c: dWeight, ldc: inFeatures, varyingShape: varyingRows)
                if let dx {
                    GEMM.bf16gemm(m: rows, n: inFeatures, k: outFeatures,
                                  a: dyb, lda: outFeatures, b: w, ldb: inFeatures,
                                  beta: accumulateInput ? 1 : 0, c: dx, ldc: inFeatures, varyingShape: varyingRows)
                }
                return
            }
            // The input is rounded again as forward rounded it (fp8: with forward's scale).
            let xr = mixed.scratch.floatInput(rows * inFeatures), dyr = mixed.scratch.floatGradient(rows * outFeatures)
            mixed.roundInput(x, to: xr, count: rows * inFeatures, recording: false)
            mixed.roundGradient(dy, to: dyr, count: rows * outFeatures)
            GEMM.sgemm(transA: true, m: outFeatures, n: inFeatures, k: rows,
                       a: dyr, lda: outFeatures, b: xr, ldb: inFeatures,
                       beta: 1, c: dWeight, ldc: inFeatures, varyingShape: varyingRows)
            if let dx {
                let wr = mixed.scratch.floatWeight(outFeatures * inFeatures)
                mixed.widenWeight(to: wr, count: outFeatures * inFeatures)
                GEMM.sgemm(m: rows, n: inFeatures, k: outFeatures,
                           a: dyr, lda: outFeatures, b: wr, ldb: inFeatures,
                           beta: accumulateInput ? 1 : 0, c: dx, ldc: inFeatures, varyingShape: varyingRows)
            }
            return
        }
        GEMM.sgemm(transA: true, m: outFeatures, n: inFeatures, k: rows,
                   a: dy, lda: outFeatures, b: x, ldb: inFeatures,
                   beta: 1, c: dWeight, ldc: inFeatures, varyingShape: varyingRows)
        if let dx {
            GEMM.sgemm(m: rows, n: inFeatures, k: outFeatures,
                       a: dy, lda: outFeatures, b: weight, ldb: inFeatures,
                       beta: accumulateInput ? 1 : 0, c: dx, ldc: inFeatures, varyingShape: varyingRows)
        }
    }
}

/// A linear layer's low-precision side in mixed precision: its weight's copy (made once per
/// optimizer step by the model) and the scratch its operands are rounded into.
public struct MixedOperands {
    public enum Weight {
        /// bf16 bits, for oneDNN's bf16 matmul.
        case bf16(UnsafePointer<UInt16>)
        /// fp16 bits, widened to fp32 for the product.
        case fp16(UnsafePointer<UInt16>)
        /// e4m3 codes of the weight times `scaling.weight.scale`; inputs and output gradients are
        /// cast per call with their own delayed scales.
        case fp8(UnsafePointer<UInt8>, FP8LinearScaling)
    }

    public let weight: Weight
    public let scratch: MixedScratch

    public init(weight: Weight, scratch: MixedScratch) {
        self.weight = weight
        self.scratch = scratch
    }

    /// `x` rounded as the product's input (fp16, or e4m3 at the input's delayed scale), as fp32.
    /// `recording`: a forward cast, which takes the next scale and records its amax; backward
    /// re-rounds with the scale forward used.
    func roundInput(_ x: UnsafePointer<Float>, to out: UnsafeMutablePointer<Float>, count: Int, recording: Bool) {
        switch weight {
        case .bf16: preconditionFailure("bf16 operands are converted, not rounded in fp32")
        case .fp16: FP16.round(x, to: out, count: count)
        case .fp8(_, let scaling):
            if recording {
                scaling.input.cast { FP8.quantize(x, to: out, count: count, scale: $0, format: .e4m3) }
            } else {
                _ = FP8.quantize(x, to: out, count: count, scale: scaling.input.scale, format: .e4m3)
            }
        }
    }

    /// The output gradient rounded (fp16, or e5m2 at the gradient's delayed scale), as fp32.
    func roundGradient(_ dy: UnsafePointer<Float>, to out: UnsafeMutablePointer<Float>, count: Int) {
        switch weight {
        case .bf16: preconditionFailure("bf16 operands are converted, not rounded in fp32")
        case .fp16: FP16.round(dy, to: out, count: count)
        case .fp8(_, let scaling):
            scaling.gradient.cast(unit: scaling.gradientUnit) { FP8.quantize(dy, to: out, count: count, scale: $0, format: .e5m2) }
        }
    }

    /// The weight copy's values, as fp32.
    func widenWeight(to out: UnsafeMutablePointer<Float>, count: Int) {
        switch weight {
        case .bf16: preconditionFailure("bf16 operands are converted, not rounded in fp32")
        case .fp16(let w): FP16.widen(w, to: out, count: count)
        case .fp8(let codes, let scaling): FP8.decode(codes, to: out, count: count, scale: scaling.weight.scale, format: .e4m3)
        }
    }
}

/// fp8 delayed scaling of one linear layer: its weight and input in e4m3, its output gradient in e5m2.
public final class FP8LinearScaling {
    public let weight: FP8Scaling
    public let input: FP8Scaling
    public let gradient: FP8Scaling
    /// The factor the output gradients carry beyond the loss's own (`Transformer.fp8GradientUnit`).
    public var gradientUnit: Float = 1

    public init(historyLength: Int) {
        weight = FP8Scaling(format: .e4m3, historyLength: historyLength)
        input = FP8Scaling(format: .e4m3, historyLength: historyLength)
        gradient = FP8Scaling(format: .e5m2, historyLength: historyLength)
    }
}

/// Growable buffers for a layer's rounded operands (one model's, used by one thread at a time):
/// bf16 input and output gradient, or fp32 input, output gradient and widened weight; and the
/// model's pool, which converts operands to bf16 split between its threads.
public final class MixedScratch {
    private let pool: ThreadPool?
    private var inputs = BFloat16Buffer(count: 0)
    private var gradients = BFloat16Buffer(count: 0)
    private var floatInputs = FloatBuffer(count: 0)
    private var floatGradients = FloatBuffer(count: 0)
    private var floatWeights = FloatBuffer(count: 0)

    public init(pool: ThreadPool? = nil) { self.pool = pool }

    /// Elements below which a conversion runs on the calling thread only.
    static let parallelConversion = 65_536

    /// `source` rounded to bf16 into `destination` (each element converted on its own, so the
    /// split between threads changes nothing).
    func convert(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<UInt16>, count: Int) {
        // Chunks of whole 64-byte lines of the destination (32 elements), so no two threads share
        // one; split in two from `parallelConversion` elements.
        let lines = (count + 31) / 32
        Elementwise.split(lines, pool, minChunk: Self.parallelConversion / 64) { range in
            let lo = range.lowerBound * 32, hi = min(count, range.upperBound * 32)
            BF16.convert(source + lo, to: destination + lo, count: hi - lo)
        }
    }

    public func input(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        if inputs.count < count { inputs = BFloat16Buffer(count: count) }
        return inputs.pointer
    }

    public func gradient(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        if gradients.count < count { gradients = BFloat16Buffer(count: count) }
        return gradients.pointer
    }

    func floatInput(_ count: Int) -> UnsafeMutablePointer<Float> {
        if floatInputs.count < count { floatInputs = FloatBuffer(count: count) }
        return floatInputs.pointer
    }

    func floatGradient(_ count: Int) -> UnsafeMutablePointer<Float> {
        if floatGradients.count < count { floatGradients = FloatBuffer(count: count) }
        return floatGradients.pointer
    }

    func floatWeight(_ count: Int) -> UnsafeMutablePointer<Float> {
        if floatWeights.count < count { floatWeights = FloatBuffer(count: count) }
        return floatWeights.pointer
    }

    /// Bytes held.
    public var bytes: Int { 2 * (inputs.count + gradients.count) + 4 * (floatInputs.count + floatGradients.count + floatWeights.count) }
}

/// A linear layer's int8 side in dynamic quantization: its int8 weight [out, in], its scales (one,
/// or one per output channel) and the scratch its input is quantized into.
public struct Int8Operands {
    public let weight: UnsafePointer<Int8>
    public let scales: UnsafePointer<Float>
    public let perChannel: Bool
    public let scratch: Int8Scratch

    public init(weight: UnsafePointer<Int8>, scales: UnsafePointer<Float>, perChannel: Bool, scratch: Int8Scratch) {
        self.weight = weight
        self.scales = scales
        self.perChannel = perChannel
        self.scratch = scratch
    }
}

/// Growable buffers for a layer's quantized input and its output scales (one model's, used by
/// one thread at a time).
public final class Int8Scratch {
    private var inputs = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 1)
    private var outputScales = FloatBuffer(count: 0)

    public init() {}

    deinit { inputs.deallocate() }

    public func input(_ count: Int) -> UnsafeMutablePointer<UInt8> {
        if inputs.count < count {
            inputs.deallocate()
            inputs = .allocate(capacity: count)
        }
        return inputs.baseAddress!
    }

    public func scales(_ count: Int) -> UnsafeMutablePointer<Float> {
        if outputScales.count < count { outputScales = FloatBuffer(count: count) }
        return outputScales.pointer
    }
}
