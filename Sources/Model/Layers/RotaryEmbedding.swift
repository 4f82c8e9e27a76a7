import Foundation
import Tensor

/// Rotary position embedding, rotate-half convention (Hugging Face Llama): dimension i of a
/// head is paired with i + d/2 and rotated by pos · θ^(−2i/d).
public struct RotaryEmbedding: Sendable {
    public let headDim: Int
    public let maxPositions: Int
    /// cos and sin tables (maxPositions, headDim/2), computed in fp32 as transformers does.
    let cosTable: [Float]
    let sinTable: [Float]

    public init(headDim: Int, maxPositions: Int, theta: Double) {
        self.headDim = headDim
        self.maxPositions = maxPositions
        let half = headDim / 2
        var invFreq = [Float](repeating: 0, count: half)
        for i in 0..<half { invFreq[i] = 1 / powf(Float(theta), Float(2 * i) / Float(headDim)) }
        var c = [Float](repeating: 0, count: maxPositions * half)
        var s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                c[p * half + i] = cosf(angle)
                s[p * half + i] = sinf(angle)
            }
        }
        cosTable = c
        sinTable = s
    }

    /// Rotates x (batch, seq, heads, headDim) in place; `inverse` applies the transpose
    /// rotation, which is the backward pass. With a `pool`, the rows (batch × seq) are split
    /// between its threads (each element's arithmetic is the same, so the result is too).
    public func apply(_ x: UnsafeMutablePointer<Float>, batch: Int, seqLen: Int, heads: Int, inverse: Bool = false,
                      pool: ThreadPool? = nil) {
        let half = headDim / 2, headDim = self.headDim
        cosTable.withUnsafeBufferPointer { cosT in
            sinTable.withUnsafeBufferPointer { sinT in
                Elementwise.split(batch * seqLen, pool, minChunk: max(1, Elementwise.minChunk / max(1, heads * headDim))) { rows in
                    for row in rows {
                        let b = row / seqLen, t = row % seqLen
                        let cs = cosT.baseAddress! + t * half, sn = sinT.baseAddress! + t * half
                        for h in 0..<heads {
                            let v = x + ((b * seqLen + t) * heads + h) * headDim
                            for i in 0..<half {
                                let a = v[i], bb = v[i + half]
                                let s = inverse ? -sn[i] : sn[i]
                                v[i] = a * cs[i] - bb * s
                                v[i + half] = bb * cs[i] + a * s
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rotates `rows` rows of x (rows, heads, headDim) in place, row r by the angle of position
    /// `positions[r]` (inference: each row of a batch of sequences has its own position).
    public func apply(_ x: UnsafeMutablePointer<Float>, positions: [Int], heads: Int) {
        let half = headDim / 2
        cosTable.withUnsafeBufferPointer { cosT in
            sinTable.withUnsafeBufferPointer { sinT in
                for (r, p) in positions.enumerated() {
                    precondition(p >= 0 && p < maxPositions, "position \(p) is outside the rotary table (max_seq_len \(maxPositions))")
                    let cs = cosT.baseAddress! + p * half, sn = sinT.baseAddress! + p * half
                    for h in 0..<heads {
                        let v = x + (r * heads + h) * headDim
                        for i in 0..<half {
                            let a = v[i], bb = v[i + half]
                            v[i] = a * cs[i] - bb * sn[i]
                            v[i + half] = bb * cs[i] + a * sn[i]
                        }
                    }
                }
            }
        }
    }
}

extension RotaryEmbedding {
    /// The tables as (maxPositions, headDim): each pair's cos and sin in both halves (the layout
    /// of transformers' `cos`/`sin` caches, which exported graphs multiply elementwise).
    public func fullTables() -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxPositions * headDim), s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                c[p * headDim + i] = cosTable[p * half + i]
                c[p * headDim + half + i] = cosTable[p * half + i]
                s[p * headDim + i] = sinTable[p * half + i]
                s[p * headDim + half + i] = sinTable[p * half + i]
            }
        }
        return (c, s)
    }
}
