import Tensor

/// Global L2 gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
public enum GradientClipping {
    /// The clip coefficient for a global norm: min(1, maxNorm / (norm + 1e-6)); torch multiplies
    /// every gradient by it, even when it is 1.
    public static func coefficient(norm: Double, maxNorm: Double) -> Float {
        Float(min(1, maxNorm / (norm + 1e-6)))
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

    /// Multiplies `grads` in place by the clip coefficient for a global `norm` (maxNorm 0 = no
    /// clipping). `grads` may be just this rank's shard when `norm` is the global one.
    /// `unscale`: the gradients are those of a scaled loss (fp16) and are multiplied by `unscale`
    /// too, in the same pass; `norm` is the norm of the unscaled gradients.
    public static func scale(_ grads: UnsafeMutableBufferPointer<Float>, norm: Double, maxNorm: Double, unscale: Float = 1,
                             pool: ThreadPool? = nil) {
        guard maxNorm > 0 || unscale != 1, let base = grads.baseAddress else { return }
        let k = (maxNorm > 0 ? coefficient(norm: norm, maxNorm: maxNorm) : 1) * unscale
        let work: (Range<Int>) -> Void = { range in Kernels.scale(base + range.lowerBound, by: k, count: range.count) }
        if let pool { pool.parallelFor(grads.count, minChunk: chunk, work) } else { work(0..<grads.count) }
    }

    /// Clips `grads` in place to `maxNorm` (0 = no clipping) and returns the norm before clipping.
    @discardableResult
    public static func clip(_ grads: UnsafeMutableBufferPointer<Float>, maxNorm: Double, pool: ThreadPool? = nil) -> Double {
        let norm = sumOfSquares(grads, pool: pool).squareRoot()
        scale(grads, norm: norm, maxNorm: maxNorm, pool: pool)
        return norm
    }
}
