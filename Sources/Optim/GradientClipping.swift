import Tensor

/// Global L2 gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
public enum GradientClipping {
    /// The clip coefficient for a global norm: min(1, maxNorm / (norm + 1e-6)); torch multiplies
    /// every gradient by it, even when it is 1.
    public static func coefficient(norm: Double, maxNorm: Double) -> Float {
        Float(min(1, maxNorm / (norm + 1e-6)))
    }

    /// What every gradient is multiplied by: the clip coefficient for a global `norm` (1 without
    /// clipping, maxNorm 0) times `unscale` (an fp16 loss scale divided out; `norm` is then the
    /// unscaled gradients' norm). AdamW applies it as it reads the gradients (`gradientScale`),
    /// so clipping costs no pass over memory of its own.
    public static func factor(norm: Double, maxNorm: Double, unscale: Float = 1) -> Float {
        (maxNorm > 0 ? coefficient(norm: norm, maxNorm: maxNorm) : 1) * unscale
    }

    /// Elements per partial sum: the sum of squares is taken per fixed chunk and the chunks are
    /// added in order, so the norm is the same whatever the number of threads.
    static let chunk = 1 << 16

    /// Σ x² over `values`, in fixed chunks spread over the pool.
    public static func sumOfSquares(_ values: UnsafeMutableBufferPointer<Float>, pool: ThreadPool? = nil) -> Double {
        let n = values.count
        guard n > 0, let base = values.baseAddress else { return 0 }
        let chunks = (n + chunk - 1) / chunk
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: chunks)
        defer { partial.deallocate() }
        let work: (Range<Int>) -> Void = { range in
            for c in range {
                let lo = c * chunk
                partial[c] = Kernels.sumOfSquares(base + lo, count: min(chunk, n - lo))
            }
        }
        if let pool { pool.parallelFor(chunks, work) } else { work(0..<chunks) }
        var total = 0.0
        for c in 0..<chunks { total += partial[c] }
        return total
    }
}
