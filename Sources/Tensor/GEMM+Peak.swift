import Dispatch

extension GEMM {
    /// The best of `repeats` − 1 timed square matmuls (n³, after one untimed) in GFLOP/s, through
    /// the current backend and the calling thread's thread count: fp32 operands, or bf16 operands
    /// with fp32 accumulation. `zerotrain bench train` measures its peaks with it (2048³); every
    /// device measures its own (1024³, ≈ 0.1 s) when it starts, for the job's MFU.
    public static func peakGflops(bf16: Bool, size n: Int = 2048, repeats: Int = 6) -> Double {
        let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
        Philox(seed: 1).fillUniform(a.buffer, low: -1, high: 1, stream: 0)
        Philox(seed: 2).fillUniform(b.buffer, low: -1, high: 1, stream: 0)
        let ab = BFloat16Buffer(count: bf16 ? n * n : 0), bb = BFloat16Buffer(count: bf16 ? n * n : 0)
        if bf16 {
            BF16.convert(a.pointer, to: ab.pointer, count: n * n)
            BF16.convert(b.pointer, to: bb.pointer, count: n * n)
        }
        var best = Double.infinity
        for i in 0..<max(2, repeats) {
            let start = DispatchTime.now().uptimeNanoseconds
            if bf16 {
                bf16gemm(m: n, n: n, k: n, a: ab.pointer, lda: n, b: bb.pointer, ldb: n, c: c.pointer, ldc: n)
            } else {
                sgemm(m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
            }
            let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if i > 0 { best = min(best, s) }
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
