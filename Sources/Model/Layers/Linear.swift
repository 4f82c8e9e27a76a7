import Tensor

/// A bias-free linear layer with the weight stored [out, in] as PyTorch does.
public enum Linear {
    /// x (rows, in) → y (rows, out) = x · Wᵀ; with `accumulate`, y += x · Wᵀ.
    @inlinable
    public static func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                               rows: Int, inFeatures: Int, outFeatures: Int, accumulate: Bool = false) {
        GEMM.sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                   a: x, lda: inFeatures, b: weight, ldb: inFeatures,
                   beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
    }

    /// dy (rows, out) → dW (out, in) += dyᵀ · x, and dx (rows, in) = dy · W (+= with `accumulateInput`).
    /// `dx` may be nil when the input needs no gradient.
    @inlinable
    public static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
                                rows: Int, inFeatures: Int, outFeatures: Int, accumulateInput: Bool = false) {
        GEMM.sgemm(transA: true, m: outFeatures, n: inFeatures, k: rows,
                   a: dy, lda: outFeatures, b: x, ldb: inFeatures,
                   beta: 1, c: dWeight, ldc: inFeatures)
        if let dx {
            GEMM.sgemm(m: rows, n: inFeatures, k: outFeatures,
                       a: dy, lda: outFeatures, b: weight, ldb: inFeatures,
                       beta: accumulateInput ? 1 : 0, c: dx, ldc: inFeatures)
        }
    }
}
