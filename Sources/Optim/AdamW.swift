import Foundation
import Tensor

/// AdamW with PyTorch semantics (`torch.optim.AdamW`, single-tensor path):
///
///     θ ← θ · (1 − lr·wd)          (decoupled decay, first, only where `decays`)
///     m ← m + (1 − β1)(g − m)       (torch's lerp)
///     v ← β2·v + (1 − β2)·g²
///     θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
///
/// It works on any slice of the flat buffers, so ZeRO can update just a rank's shard.
public struct AdamW: Sendable {
    public var beta1: Double, beta2: Double, eps: Double, weightDecay: Double

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }

    public init(_ config: OptimizerConfig) {
        self.init(beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay)
    }

    /// One update of `count` elements. `t` is the 1-based update count (for bias correction);
    /// `decays` says whether weight decay applies to this range. `gradientScale` multiplies each
    /// gradient as it is read (the clip factor, `GradientClipping.factor`): the same products
    /// clipping the buffer first would store, without its pass over memory.
    ///
    /// Per element, in torch.optim.AdamW's order: g ← g·k; m ← m + (1−β1)(g − m);
    /// v ← β2·v + (1−β2)·g·g; p ← p·(1 − lr·λ) − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε).
    /// The kernel is `Kernels.adamW` (AVX-512 lanes or its portable C, the same bits); every
    /// element gets the same arithmetic, so any split of a buffer gives the same result.
    public func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                       m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                       lr: Double, t: Int, decays: Bool, gradientScale k: Float = 1) {
        let bc1 = 1 - pow(beta1, Double(t))
        let bc2 = 1 - pow(beta2, Double(t))
        let decay: Float = decays ? Float(1 - lr * weightDecay) : 1
        Kernels.adamW(parameters: p, gradients: g, m: m, v: v, count: count, gradientScale: k,
                      stepSize: Float(lr / bc1), bc2Sqrt: Float(bc2.squareRoot()), decay: decay,
                      beta2: Float(beta2), oneMinusBeta1: Float(1 - beta1), oneMinusBeta2: Float(1 - beta2), eps: Float(eps))
    }
}
