import Tensor

/// Global L2 gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
public enum GradientClipping {
    /// The clip coefficient for a global norm: min(1, maxNorm / (norm + 1e-6)); torch multiplies
    /// every gradient by it, even when it is 1.
    public static func coefficient(norm: Double, maxNorm: Double) -> Float {
        Float(min(1, maxNorm / (norm + 1e-6)))
    }

    /// Clips `grads` in place to `maxNorm` (0 = no clipping) and returns the norm before clipping.
    @discardableResult
    public static func clip(_ grads: UnsafeMutableBufferPointer<Float>, maxNorm: Double) -> Double {
        let norm = Kernels.sumOfSquares(grads.baseAddress!, count: grads.count).squareRoot()
        if maxNorm > 0 {
            Kernels.scale(grads.baseAddress!, by: coefficient(norm: norm, maxNorm: maxNorm), count: grads.count)
        }
        return norm
    }
}
