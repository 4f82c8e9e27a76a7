import Foundation
import Tensor

/// Causal attention of new positions against a key/value cache (inference; no backward).
///
/// A sequence has seen positions 0 ..< past; its cache holds the keys and values of position p at
/// slot p % capacity, so a cache of W slots is a rolling window (a sliding-window model needs only
/// the last W − 1 positions) and a cache as long as the sequence is a plain one. The keys and values
/// of the new positions past ..< past + n come in `newKeys` / `newValues` (not yet in the cache, so
/// that writing them cannot overwrite a slot an earlier new row still reads). Query head h reads
/// key/value head h / (heads / kvHeads); position t attends to max(0, t − W + 1) … t (0 … t without a
/// window), the keys of `Attention.forward`, in position order.
public enum CachedAttention {
    /// One query row of one head: q (d) at position `past + row` → out (d). `scores` has room for
    /// the positions it sees (≤ past + row + 1, ≤ the window).
    @inline(__always)
    public static func row(_ row: Int, head h: Int, q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                           newKeys: UnsafePointer<Float>, newValues: UnsafePointer<Float>,
                           cacheKeys: UnsafePointer<Float>, cacheValues: UnsafePointer<Float>,
                           capacity: Int, past: Int, heads: Int, kvHeads: Int, headDim d: Int, window: Int?,
                           scores: UnsafeMutablePointer<Float>) {
        let g = h / (heads / kvHeads), ks = kvHeads * d
        let t = past + row
        let first = window.map { max(0, t - $0 + 1) } ?? 0
        precondition(past - first <= capacity, "the cache holds \(capacity) positions; position \(t) needs \(past - first)")
        let scale = 1 / Float(d).squareRoot()
        @inline(__always) func key(_ j: Int) -> UnsafePointer<Float> {
            j >= past ? newKeys + (j - past) * ks + g * d : cacheKeys + (j % capacity) * ks + g * d
        }
        @inline(__always) func value(_ j: Int) -> UnsafePointer<Float> {
            j >= past ? newValues + (j - past) * ks + g * d : cacheValues + (j % capacity) * ks + g * d
        }
        let count = t - first + 1
        for j in first...t { scores[j - first] = scale * Kernels.dot(q, key(j), count: d) }
        Kernels.softmaxRow(scores, count: count)
        out.update(repeating: 0, count: d)
        for j in first...t { Kernels.axpy(scores[j - first], value(j), into: out, count: d) }
    }
}
