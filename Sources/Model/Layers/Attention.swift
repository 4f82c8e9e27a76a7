import Foundation
import Tensor

/// Causal multi-head attention with grouped-query heads and an optional sliding window.
///
/// Query head h reads key/value head h / (heads / kvHeads). With a window W, position t
/// attends to t−W+1 … t; without one, to 0 … t. Queries are processed in blocks of
/// `AttentionBlocks.blockSize` rows; a block's scores cover only the keys some row of the block
/// can see, so time and memory are O(T·(W + block)) with a window and about T²/2 without one.
/// Scores and outputs are GEMMs (one BLAS thread per task; tasks run on the pool).
public enum Attention {
    /// Positions a query sees at most: the window, capped by the sequence length.
    public static func span(seqLen: Int, window: Int?) -> Int { min(window ?? seqLen, seqLen) }

    /// q (B, T, H, d), k, v (B, T, Hkv, d) → out (B, T, H, d);
    /// saves probs (B, H, blocks.probsPerHead): the softmax weights of each query block.
    public static func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                               batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim d: Int,
                               window: Int?, pool: ThreadPool) {
        let layout = AttentionBlocks(seqLen: seqLen, window: window)
        let group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        let qs = heads * d, ks = kvHeads * d   // row strides
        withSingleThreadedBLAS(pool) {
            pool.parallelFor(batch * heads) { range in
                for task in range {
                    let b = task / heads, h = task % heads, g = h / group
                    let headProbs = probs + task * layout.probsPerHead
                    for blk in layout.blocks {
                        let p = headProbs + blk.offset
                        GEMM.sgemm(transB: true, m: blk.qCount, n: blk.kCount, k: d, alpha: scale,
                                   a: q + (b * seqLen + blk.qStart) * qs + h * d, lda: qs,
                                   b: k + (b * seqLen + blk.kStart) * ks + g * d, ldb: ks,
                                   c: p, ldc: blk.kCount)
                        for r in 0..<blk.qCount {
                            let (lo, hi) = layout.visible(block: blk, row: r)
                            let row = p + r * blk.kCount
                            if lo > 0 { row.update(repeating: 0, count: lo) }
                            Kernels.softmaxRow(row + lo, count: hi - lo)
                            if hi < blk.kCount { (row + hi).update(repeating: 0, count: blk.kCount - hi) }
                        }
                        GEMM.sgemm(m: blk.qCount, n: d, k: blk.kCount,
                                   a: p, lda: blk.kCount,
                                   b: v + (b * seqLen + blk.kStart) * ks + g * d, ldb: ks,
                                   c: out + (b * seqLen + blk.qStart) * qs + h * d, ldc: qs)
                    }
                }
            }
        }
    }

    /// dOut (B, T, H, d) → dq (B, T, H, d), dk, dv (B, T, Hkv, d), all overwritten.
    public static func backward(dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim d: Int,
                                window: Int?, pool: ThreadPool) {
        let layout = AttentionBlocks(seqLen: seqLen, window: window)
        let group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        let qs = heads * d, ks = kvHeads * d
        withSingleThreadedBLAS(pool) {
            // One task per (batch, kv head): it owns that head's dk/dv and its query heads' dq.
            pool.parallelFor(batch * kvHeads) { range in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: layout.largestBlock)
                defer { scratch.deallocate() }
                for task in range {
                    let b = task / kvHeads, g = task % kvHeads
                    for t in 0..<seqLen {
                        (dk + (b * seqLen + t) * ks + g * d).update(repeating: 0, count: d)
                        (dv + (b * seqLen + t) * ks + g * d).update(repeating: 0, count: d)
                    }
                    for h in (g * group)..<((g + 1) * group) {
                        let headProbs = probs + (b * heads + h) * layout.probsPerHead
                        for blk in layout.blocks {
                            let p = headProbs + blk.offset
                            let dO = dOut + (b * seqLen + blk.qStart) * qs + h * d
                            let kBlk = k + (b * seqLen + blk.kStart) * ks + g * d
                            // dP = dO · Vᵀ, then dS = P ∘ (dP − rowsum(P ∘ dP)) · scale (masked entries have P = 0).
                            GEMM.sgemm(transB: true, m: blk.qCount, n: blk.kCount, k: d,
                                       a: dO, lda: qs, b: v + (b * seqLen + blk.kStart) * ks + g * d, ldb: ks,
                                       c: scratch, ldc: blk.kCount)
                            for r in 0..<blk.qCount {
                                let pr = p + r * blk.kCount, ds = scratch + r * blk.kCount
                                let dot = Kernels.dot(pr, ds, count: blk.kCount)
                                for j in 0..<blk.kCount { ds[j] = pr[j] * (ds[j] - dot) * scale }
                            }
                            GEMM.sgemm(m: blk.qCount, n: d, k: blk.kCount, a: scratch, lda: blk.kCount,
                                       b: kBlk, ldb: ks, c: dq + (b * seqLen + blk.qStart) * qs + h * d, ldc: qs)
                            GEMM.sgemm(transA: true, m: blk.kCount, n: d, k: blk.qCount, a: scratch, lda: blk.kCount,
                                       b: q + (b * seqLen + blk.qStart) * qs + h * d, ldb: qs,
                                       beta: 1, c: dk + (b * seqLen + blk.kStart) * ks + g * d, ldc: ks)
                            GEMM.sgemm(transA: true, m: blk.kCount, n: d, k: blk.qCount, a: p, lda: blk.kCount,
                                       b: dO, ldb: qs, beta: 1, c: dv + (b * seqLen + blk.kStart) * ks + g * d, ldc: ks)
                        }
                    }
                }
            }
        }
    }

    /// Runs `body` with OpenBLAS limited to one thread when the pool supplies the parallelism.
    static func withSingleThreadedBLAS(_ pool: ThreadPool, _ body: () -> Void) {
        guard pool.size > 1 else { body(); return }
        let saved = GEMM.threads
        GEMM.setThreads(1)
        body()
        GEMM.setThreads(saved)
    }
}

/// How attention splits a sequence into query blocks, and where each block's probabilities live.
public struct AttentionBlocks: Sendable {
    public static let blockSize = 64

    public struct Block: Sendable {
        /// Query rows qStart ..< qStart + qCount see keys kStart ..< kStart + kCount (some masked).
        public let qStart: Int, qCount: Int, kStart: Int, kCount: Int
        /// Offset of the block's (qCount × kCount) probabilities within one head's.
        public let offset: Int
    }

    public let window: Int?
    public let blocks: [Block]
    /// Probability elements per (batch, head).
    public let probsPerHead: Int
    /// Elements of the largest block.
    public let largestBlock: Int

    public init(seqLen: Int, window: Int?) {
        self.window = window
        var blocks: [Block] = []
        var offset = 0, largest = 0
        var start = 0
        while start < seqLen {
            let count = min(Self.blockSize, seqLen - start)
            let kStart = window.map { max(0, start - $0 + 1) } ?? 0
            let kCount = start + count - kStart
            blocks.append(Block(qStart: start, qCount: count, kStart: kStart, kCount: kCount, offset: offset))
            offset += count * kCount
            largest = max(largest, count * kCount)
            start += count
        }
        self.blocks = blocks
        self.probsPerHead = offset
        self.largestBlock = largest
    }

    /// Columns lo ..< hi of the block's row `row` that the query may attend to.
    @inline(__always)
    public func visible(block: Block, row: Int) -> (lo: Int, hi: Int) {
        let t = block.qStart + row
        let first = window.map { max(0, t - $0 + 1) } ?? 0
        return (first - block.kStart, t - block.kStart + 1)
    }
}
