import Tensor

/// Inverted dropout with a counter-based mask: element i is kept when
/// Philox(seed).uniform(i, stream) ≥ p and scaled by 1/(1−p). The mask is regenerated from
/// (seed, stream) in backward, so nothing is saved and resumed runs draw the same masks.
public enum Dropout {
    /// x (count) → x · mask / (1 − p), in place. Backward is the same call on the gradient.
    public static func apply(_ x: UnsafeMutablePointer<Float>, count: Int, p: Float, rng: Philox, stream: UInt64) {
        guard p > 0 else { return }
        let scale = 1 / (1 - p)
        for i in 0..<count {
            x[i] = rng.uniform(index: UInt64(i), stream: stream) >= p ? x[i] * scale : 0
        }
    }
}
