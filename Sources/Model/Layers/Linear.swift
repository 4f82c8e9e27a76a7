import Tensor

/// A bias-free linear layer with the weight stored [out, in] as PyTorch does. `varyingRows`:
/// the row count changes from call to call (an MoE expert's tokens).
///
/// In mixed precision (`bf16` given) the products take bf16 operands — the weight's bf16 copy
/// and the input (or output gradient) rounded to bf16 in `bf16.scratch` — and accumulate and
/// write fp32, as `torch.autocast` does for `linear` (with an fp32 instead of a bf16 result).
///
/// In int8 inference (`int8` given) the product is PyTorch's dynamically quantized linear: x is
/// quantized to uint8 per call from its min and max (`Quantization.quantizeActivations`), multiplied
/// by the int8 weight with int32 accumulation, and written in fp32 as
/// y = (scale_x · scale_w) · Σ (q_x − zero_x) · q_w. The fp32 `weight` is then not read.
public enum Linear {
    /// x (rows, in) → y (rows, out) = x · Wᵀ; with `accumulate`, y += x · Wᵀ.
    public static func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                               rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false,
                               bf16: BF16Operands? = nil, int8: Int8Operands? = nil, varyingRows: Bool = false) {
        if let int8 {
            let xq = int8.scratch.input(rows * inFeatures), scales = int8.scratch.scales(outFeatures)
            let p = Quantization.quantizeActivations(x, count: rows * inFeatures, into: xq)
            for j in 0..<outFeatures { scales[j] = p.scale * int8.scales[int8.perChannel ? j : 0] }
            GEMM.int8gemm(m: rows, n: outFeatures, k: inFeatures, a: xq, lda: inFeatures, aZeroPoint: p.zeroPoint,
                          b: int8.weight, ldb: inFeatures, scales: scales, accumulate: accumulate, c: y, ldc: outFeatures)
            return
        }
        if let bf16 {
            let xb = bf16.scratch.input(rows * inFeatures)
            BF16.convert(x, to: xb, count: rows * inFeatures)
            GEMM.bf16gemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                          a: xb, lda: inFeatures, b: bf16.weight, ldb: inFeatures,
                          beta: accumulate ? 1 : 0, c: y, ldc: outFeatures, varyingShape: varyingRows)
            return
        }
        GEMM.sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                   a: x, lda: inFeatures, b: weight, ldb: inFeatures,
                   beta: accumulate ? 1 : 0, c: y, ldc: outFeatures, varyingShape: varyingRows)
    }

    /// dy (rows, out) → dW (out, in) += dyᵀ · x, and dx (rows, in) = dy · W (+= with `accumulateInput`).
    /// `dx` may be nil when the input needs no gradient.
    public static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                                rows: Int, inFeatures: Int, outFeatures: Int, accumulateInput: Bool = false,
                                bf16: BF16Operands? = nil, varyingRows: Bool = false) {
        if let bf16 {
            let xb = bf16.scratch.input(rows * inFeatures), dyb = bf16.scratch.gradient(rows * outFeatures)
            BF16.convert(x, to: xb, count: rows * inFeatures)
            BF16.convert(dy, to: dyb, count: rows * outFeatures)
            GEMM.bf16gemm(transA: true, m: outFeatures, n: inFeatures, k: rows,
                          a: dyb, lda: outFeatures, b: xb, ldb: inFeatures,
                          beta: 1, c: dWeight, ldc: inFeatures, varyingShape: varyingRows)
            if let dx {
                GEMM.bf16gemm(m: rows, n: inFeatures, k: outFeatures,
                              a: dyb, lda: outFeatures, b: bf16.weight, ldb: inFeatures,
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

/// A linear layer's bf16 side in mixed precision: its weight's bf16 copy (refreshed once per
/// optimizer step by the model) and the scratch its operands are rounded into.
public struct BF16Operands {
    public let weight: UnsafePointer<UInt16>
    public let scratch: BF16Scratch

    public init(weight: UnsafePointer<UInt16>, scratch: BF16Scratch) {
        self.weight = weight
        self.scratch = scratch
    }
}

/// Growable bf16 buffers for a layer's input and output gradient (one model's, used by one
/// thread at a time).
public final class BF16Scratch {
    private var inputs = BFloat16Buffer(count: 0)
    private var gradients = BFloat16Buffer(count: 0)

    public init() {}

    public func input(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        if inputs.count < count { inputs = BFloat16Buffer(count: count) }
        return inputs.pointer
    }

    public func gradient(_ count: Int) -> UnsafeMutablePointer<UInt16> {
        if gradients.count < count { gradients = BFloat16Buffer(count: count) }
        return gradients.pointer
    }

    /// Bytes held.
    public var bytes: Int { 2 * (inputs.count + gradients.count) }
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
