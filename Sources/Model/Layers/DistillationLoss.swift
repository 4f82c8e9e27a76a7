import Foundation
import Tensor

/// Knowledge distillation's soft-target term, as PyTorch's
/// `KLDivLoss(reduction="batchmean")(log_softmax(s / T), softmax(t / T))` computes it over
/// (rows, V) logits: Σ_rows Σ_j p_t,j · (log p_t,j − log p_s,j) / rows, with p = softmax(· / T)
/// and 0 · log 0 = 0. The distillation loss is α · T² · that + (1 − α) · cross-entropy.
///
/// Works on any block of rows, so a teacher's logits are made and used a chunk of rows at a time.
public enum DistillationLoss {
    /// Rows of teacher logits made at once: at most 2²⁰ floats (4 MiB), at least one row.
    public static func chunkRows(vocab: Int) -> Int { max(1, (1 << 20) / max(1, vocab)) }

    /// student, teacher (rows, V) → Σ over the rows of KL(p_t ‖ p_s) (not yet divided by the
    /// batch's rows). When `dLogits` is given, adds `gradScale` · (p_s − p_t) to it: the gradient
    /// of T² · KL / N for `gradScale` = scale · T / N (d KL/ds = (p_s − p_t) / T).
    public static func forward(student: UnsafePointer<Float>, teacher: UnsafePointer<Float>, rows: Int, vocab v: Int,
                               temperature: Float, dLogits: UnsafeMutablePointer<Float>?, gradScale: Float, pool: ThreadPool) -> Double {
        let perRow = UnsafeMutablePointer<Double>.allocate(capacity: rows)
        defer { perRow.deallocate() }
        let inv = 1 / temperature
        pool.parallelFor(rows, minChunk: 8) { range in
            for n in range {
                let s = student + n * v, t = teacher + n * v
                var ms = -Float.infinity, mt = -Float.infinity
                for j in 0..<v {
                    ms = max(ms, s[j] * inv)
                    mt = max(mt, t[j] * inv)
                }
                var zs: Double = 0, zt: Double = 0
                for j in 0..<v {
                    zs += Foundation.exp(Double(s[j] * inv - ms))
                    zt += Foundation.exp(Double(t[j] * inv - mt))
                }
                let lseS = Double(ms) + Foundation.log(zs), lseT = Double(mt) + Foundation.log(zt)
                var kl: Double = 0
                for j in 0..<v {
                    let logPt = Double(t[j] * inv) - lseT, logPs = Double(s[j] * inv) - lseS
                    let pt = Foundation.exp(logPt)
                    if pt > 0 { kl += pt * (logPt - logPs) }
                    if let d = dLogits { d[n * v + j] += gradScale * Float(Foundation.exp(logPs) - pt) }
                }
                perRow[n] = kl
            }
        }
        var total: Double = 0
        for n in 0..<rows { total += perRow[n] }
        return total
    }
}
