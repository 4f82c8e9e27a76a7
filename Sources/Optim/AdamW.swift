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
    /// clipping the buffer first would store, without its pass over memory. Vectorised 16 lanes at a time;
    /// every element gets the same arithmetic, so any split of a buffer gives the same result.
    public func update(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                       m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                       lr: Double, t: Int, decays: Bool, gradientScale k: Float = 1) {
        typealias V = SIMD16<Float>
        let bc1 = 1 - pow(beta1, Double(t))
        let bc2 = 1 - pow(beta2, Double(t))
        let stepSize = Float(lr / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let decay: Float = decays ? Float(1 - lr * weightDecay) : 1
        let b2 = Float(beta2), oneMinusB1 = Float(1 - beta1), oneMinusB2 = Float(1 - beta2)
        let e = Float(eps)
        var i = 0
        let pr = UnsafeMutableRawPointer(p), gr = UnsafeRawPointer(g), mr = UnsafeMutableRawPointer(m), vr = UnsafeMutableRawPointer(v)
        while i + 16 <= count {
            let o = i * 4
            let gi = gr.loadUnaligned(fromByteOffset: o, as: V.self) * k
            let mOld = mr.loadUnaligned(fromByteOffset: o, as: V.self)
            let mi = mOld + oneMinusB1 * (gi - mOld)
            let vi = b2 * vr.loadUnaligned(fromByteOffset: o, as: V.self) + oneMinusB2 * gi * gi
            let denom = vi.squareRoot() / bc2Sqrt + e
            let pi = pr.loadUnaligned(fromByteOffset: o, as: V.self) * decay - stepSize * (mi / denom)
            mr.storeBytes(of: mi, toByteOffset: o, as: V.self)
            vr.storeBytes(of: vi, toByteOffset: o, as: V.self)
            pr.storeBytes(of: pi, toByteOffset: o, as: V.self)
            i += 16
        }
        while i < count {
            let gi = g[i] * k
            let mi = m[i] + oneMinusB1 * (gi - m[i])
            let vi = b2 * v[i] + oneMinusB2 * gi * gi
            m[i] = mi
            v[i] = vi
            let denom = vi.squareRoot() / bc2Sqrt + e
            p[i] = p[i] * decay - stepSize * (mi / denom)
            i += 1
        }
    }
}
