import Foundation
import Tensor

/// Mean token cross-entropy over logits (rows, V).
public enum CrossEntropy {
    /// logits (rows, V), targets (rows) → per-row log-sum-exp (rows); returns the mean loss.
    public static func forward(logits: UnsafePointer<Float>, targets: UnsafeBufferPointer<Int32>,
                               logSumExp: UnsafeMutablePointer<Float>, rows: Int, vocab v: Int, pool: ThreadPool) -> Float {
        let losses = UnsafeMutablePointer<Float>.allocate(capacity: rows)
        defer { losses.deallocate() }
        pool.parallelFor(rows, minChunk: 16) { range in
            for n in range {
                let row = logits + n * v
                var m = -Float.infinity
                for j in 0..<v { m = max(m, row[j]) }
                var s: Float = 0
                Kernels.exp(of: 0..<v, { row[$0] - m }) { _, e, k in
                    for j in 0..<k { s += e[j] }
                }
                let lse = m + logf(s)
                logSumExp[n] = lse
                losses[n] = lse - row[Int(targets[n])]
            }
        }
        var total: Double = 0
        for n in 0..<rows { total += Double(losses[n]) }
        return Float(total / Double(rows))
    }

    /// dLogits (rows, V) = scale · (softmax(logits) − onehot(target)) / rows.
    public static func backward(logits: UnsafePointer<Float>, targets: UnsafeBufferPointer<Int32>, logSumExp: UnsafePointer<Float>,
                                dLogits: UnsafeMutablePointer<Float>, rows: Int, vocab v: Int, scale: Float, pool: ThreadPool) {
        let k = scale / Float(rows)
        pool.parallelFor(rows, minChunk: 16) { range in
            for n in range {
                let row = logits + n * v, d = dLogits + n * v
                let lse = logSumExp[n]
                for j in 0..<v { d[j] = row[j] - lse }
                Kernels.exp(d, into: d, count: v)
                Kernels.scale(d, by: k, count: v)
                d[Int(targets[n])] -= k
            }
        }
    }
}
