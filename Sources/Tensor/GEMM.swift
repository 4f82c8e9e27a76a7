import COpenBLAS

/// Row-major single-precision matrix multiply through OpenBLAS:
/// C (m×n) = alpha · op(A) · op(B) + beta · C, where op(A) is (m×k) and op(B) is (k×n).
///
/// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored (so for a transposed A
/// stored as k×m, lda ≥ m).
public enum GEMM {
    @inlinable
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS still scales C by beta; do the same without calling it with k = 0.
            for i in 0..<m {
                let row = c + i * ldc
                for j in 0..<n { row[j] = beta == 0 ? 0 : row[j] * beta }
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }

    /// Sets the number of threads OpenBLAS uses for one call (process-wide).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// The kernel family OpenBLAS chose ("Haswell", "Cooperlake", …; `OPENBLAS_CORETYPE` forces
    /// one). Results are bitwise reproducible for one kernel family and thread count only.
    public static var kernelName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }
}
