import Foundation
import Model
import Tensor

/// The plain per-position attention loops that the blocked GEMM kernel is checked against.
/// Causal multi-head attention with grouped-query heads and an optional sliding window.
///
/// Query head h reads key/value head h / (heads / kvHeads). With a window W, position t
/// attends to t−W+1 … t; without one, to 0 … t. Only those positions are computed and their
/// probabilities saved, so time and memory are O(T·W), not O(T²).
enum ReferenceAttention {
    /// Positions a query sees at most: the window, capped by the sequence length.
    
    /// q (B, T, H, d), k, v (B, T, Hkv, d) → out (B, T, H, d);
    /// saves probs (B, H, T, span): row t holds the weights of positions max(0, t−span+1) … t.
    static func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                               batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim d: Int,
                               window: Int?, pool: ThreadPool) {
        let span = Attention.span(seqLen: seqLen, window: window)
        let group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        pool.parallelFor(batch * heads) { range in
            for task in range {
                let b = task / heads, h = task % heads, g = h / group
                for t in 0..<seqLen {
                    let lo = max(0, t - span + 1)
                    let qt = q + ((b * seqLen + t) * heads + h) * d
                    let row = probs + ((b * heads + h) * seqLen + t) * span
                    var m = -Float.infinity
                    for j in lo...t {
                        let s = Kernels.dot(qt, k + ((b * seqLen + j) * kvHeads + g) * d, count: d) * scale
                        row[j - lo] = s
                        m = max(m, s)
                    }
                    var sum: Float = 0
                    for j in 0...(t - lo) {
                        let e = expf(row[j] - m)
                        row[j] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    for j in 0...(t - lo) { row[j] *= inv }
                    if t - lo + 1 < span { (row + t - lo + 1).update(repeating: 0, count: span - (t - lo + 1)) }
                    let ot = out + ((b * seqLen + t) * heads + h) * d
                    ot.update(repeating: 0, count: d)
                    for j in lo...t {
                        Kernels.axpy(row[j - lo], v + ((b * seqLen + j) * kvHeads + g) * d, into: ot, count: d)
                    }
                }
            }
        }
    }

    /// dOut (B, T, H, d) → dq (B, T, H, d), dk, dv (B, T, Hkv, d), all overwritten.
    static func backward(dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim d: Int,
                                window: Int?, pool: ThreadPool) {
        let span = Attention.span(seqLen: seqLen, window: window)
        let group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        // One task per (batch, kv head): it owns that head's dk/dv and its query heads' dq.
        pool.parallelFor(batch * kvHeads) { range in
            let ds = UnsafeMutablePointer<Float>.allocate(capacity: span)
            defer { ds.deallocate() }
            for task in range {
                let b = task / kvHeads, g = task % kvHeads
                for t in 0..<seqLen {
                    (dk + ((b * seqLen + t) * kvHeads + g) * d).update(repeating: 0, count: d)
                    (dv + ((b * seqLen + t) * kvHeads + g) * d).update(repeating: 0, count: d)
                }
                for h in (g * group)..<((g + 1) * group) {
                    for t in 0..<seqLen {
                        let lo = max(0, t - span + 1)
                        let row = probs + ((b * heads + h) * seqLen + t) * span
                        let dot = dOut + ((b * seqLen + t) * heads + h) * d
                        let qt = q + ((b * seqLen + t) * heads + h) * d
                        var sum: Float = 0
                        for j in lo...t {
                            let dp = Kernels.dot(dot, v + ((b * seqLen + j) * kvHeads + g) * d, count: d)
                            ds[j - lo] = dp
                            sum += row[j - lo] * dp
                        }
                        let dqt = dq + ((b * seqLen + t) * heads + h) * d
                        dqt.update(repeating: 0, count: d)
                        for j in lo...t {
                            let p = row[j - lo]
                            let s = p * (ds[j - lo] - sum) * scale
                            let kj = k + ((b * seqLen + j) * kvHeads + g) * d
                            Kernels.axpy(s, kj, into: dqt, count: d)
                            Kernels.axpy(s, qt, into: dk + ((b * seqLen + j) * kvHeads + g) * d, count: d)
                            Kernels.axpy(p, dot, into: dv + ((b * seqLen + j) * kvHeads + g) * d, count: d)
                        }
                    }
                }
            }
        }
    }
}
