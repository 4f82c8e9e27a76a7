import Tensor
import Testing

/// Central finite differences against an analytic gradient.
///
/// For every element of every buffer in `params`: θ ± eps, evaluate `loss` (accumulated in
/// Double), (L⁺ − L⁻) / 2eps. Each buffer's analytic gradient must match in relative L2 error.
func expectGradientsMatch(_ label: String, params: [(String, UnsafeMutableBufferPointer<Float>)], analytic: [[Float]],
                          eps: Float = 1e-2, tolerance: Double = 5e-3, loss: () -> Double) {
    for ((name, p), g) in zip(params, analytic) {
        precondition(p.count == g.count, "\(label).\(name): analytic gradient has the wrong size")
        var num = 0.0, den = 0.0
        for i in 0..<p.count {
            let saved = p[i]
            p[i] = saved + eps
            let plus = loss()
            p[i] = saved - eps
            let minus = loss()
            p[i] = saved
            let numeric = (plus - minus) / Double(2 * eps)
            num += (numeric - Double(g[i])) * (numeric - Double(g[i]))
            den += numeric * numeric
        }
        let rel = (num / max(den, 1e-20)).squareRoot()
        #expect(rel <= tolerance, "\(label): gradient of \(name) differs from finite differences (relative L2 \(rel))")
    }
}

/// Deterministic test data in [-1, 1).
func randomBuffer(_ count: Int, seed: UInt64) -> FloatBuffer {
    let b = FloatBuffer(count: count)
    Philox(seed: seed).fillUniform(b.buffer, low: -1, high: 1, stream: 0)
    return b
}

/// Σ y·r in Double: the scalar whose gradient with respect to y is r.
func project(_ y: UnsafePointer<Float>, _ r: FloatBuffer) -> Double {
    var s = 0.0
    for i in 0..<r.count { s += Double(y[i]) * Double(r.pointer[i]) }
    return s
}
