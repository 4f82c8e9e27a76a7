extension GEMM {
    /// The int8 product of dynamic quantization, fp32 result:
    /// C (m×n) = scales[j] · Σₚ (A[i,p] − aZeroPoint) · B[j,p]  (+ C with `accumulate`),
    /// A u8 (m×k, row stride lda), B s8 stored [n, k] as a linear layer's weight (row stride ldb),
    /// `scales` n floats (activation scale × each output channel's weight scale).
    ///
    /// The sums are exact in int32 (|Σ| ≤ k · 255 · 128 < 2³¹ for k < 65 793); the result is
    /// Float(Σ) · scale, so oneDNN and the portable loop give the same bits. On oneDNN (the default
    /// backend) it is one matmul primitive, u8 × s8 → s32 with VNNI where the CPU has it; on
    /// OpenBLAS, or where oneDNN has no int8 matmul, the portable loop `int8Reference` runs.
    public static func int8gemm(m: Int, n: Int, k: Int,
                                a: UnsafePointer<UInt8>, lda: Int, aZeroPoint: Int32,
                                b: UnsafePointer<Int8>, ldb: Int, scales: UnsafePointer<Float>,
                                accumulate: Bool = false, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 { scale(c, m: m, n: n, ldc: ldc, beta: accumulate ? 1 : 0); return }
        if backend == .onednn,
           OneDNN.int8Matmul(m: m, n: n, k: k, a: a, lda: lda, aZeroPoint: aZeroPoint, b: b, ldb: ldb,
                             scales: scales, accumulate: accumulate, c: c, ldc: ldc) { return }
        int8Reference(m: m, n: n, k: k, a: a, lda: lda, aZeroPoint: aZeroPoint, b: b, ldb: ldb, scales: scales,
                      accumulate: accumulate, c: c, ldc: ldc)
    }

    /// The portable int8 product (same contract and bits as `int8gemm`): int32 dot products of
    /// 16-lane vectors, the zero point folded in as zeroPoint · Σₚ B[j,p] (as fbgemm does).
    public static func int8Reference(m: Int, n: Int, k: Int,
                                     a: UnsafePointer<UInt8>, lda: Int, aZeroPoint: Int32,
                                     b: UnsafePointer<Int8>, ldb: Int, scales: UnsafePointer<Float>,
                                     accumulate: Bool = false, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let vectors = k / 16
        for j in 0..<n {
            let column = b + j * ldb
            var columnSum: Int32 = 0
            for p in 0..<k { columnSum &+= Int32(column[p]) }
            for i in 0..<m {
                let row = a + i * lda
                var lanes = SIMD16<Int32>()
                for v in 0..<vectors {
                    let x = UnsafeRawPointer(row + 16 * v).loadUnaligned(as: SIMD16<UInt8>.self)
                    let w = UnsafeRawPointer(column + 16 * v).loadUnaligned(as: SIMD16<Int8>.self)
                    lanes &+= SIMD16<Int32>(truncatingIfNeeded: x) &* SIMD16<Int32>(truncatingIfNeeded: w)
                }
                var sum = lanes.wrappedSum()
                for p in (16 * vectors)..<k { sum &+= Int32(row[p]) &* Int32(column[p]) }
                let value = Float(sum &- aZeroPoint &* columnSum) * scales[j]
                c[i * ldc + j] = accumulate ? c[i * ldc + j] + value : value
            }
        }
    }
}
