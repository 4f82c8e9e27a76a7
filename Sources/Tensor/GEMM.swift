import CBF16
import CDNNL
import COpenBLAS
import Synchronization

/// Which library runs the model's matrix products (`training.gemm`).
public enum GEMMBackend: String, Sendable, CaseIterable {
    /// oneDNN matmul primitives (fp32 and bf16), the default.
    case onednn
    /// OpenBLAS SGEMM, the portable fallback (bf16 products are computed in fp32 from bf16 inputs).
    case openblas
}

/// Row-major matrix multiply: C (m×n) = alpha · op(A) · op(B) + beta · C, where op(A) is (m×k)
/// and op(B) is (k×n).
///
/// `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored (so for a transposed A
/// stored as k×m, lda ≥ m). `backend` chooses oneDNN or OpenBLAS for every call in the process.
public enum GEMM {
    private static let selected = Atomic<UInt8>(0)

    /// The library every product goes through (process-wide; set once at start-up).
    public static var backend: GEMMBackend {
        get { selected.load(ordering: .relaxed) == 0 ? .onednn : .openblas }
        set { selected.store(newValue == .onednn ? 0 : 1, ordering: .relaxed) }
    }

    /// fp32 operands, fp32 result. `varyingShape`: m, n or k change from call to call (an MoE
    /// expert's rows); oneDNN then uses one primitive with run-time dimensions.
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        varyingShape: Bool = false
    ) {
        if doneWithoutBLAS(type: .f32, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                           b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, varyingShape: varyingShape) { return }
        blas(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
             beta: beta, c: c, ldc: ldc)
    }

    /// bf16 operands (raw bf16 bit patterns), fp32 accumulation and result. On OpenBLAS, or where
    /// oneDNN has no bf16 implementation, the bf16 inputs are widened and multiplied in fp32 (the
    /// same products, exact in fp32, summed in another order).
    public static func bf16gemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<UInt16>, lda: Int,
        b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        varyingShape: Bool = false
    ) {
        if doneWithoutBLAS(type: .bf16, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                           b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, varyingShape: varyingShape) { return }
        let aRows = transA ? k : m, bRows = transB ? n : k
        let wideA = FloatBuffer(count: aRows * lda), wideB = FloatBuffer(count: bRows * ldb)
        zt_bf16_to_f32(a, wideA.pointer, aRows * lda)
        zt_bf16_to_f32(b, wideB.pointer, bRows * ldb)
        blas(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: wideA.pointer, lda: lda,
             b: wideB.pointer, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    static func blas(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }

    /// What both entry points do before BLAS: nothing for an empty result, C = beta · C for k = 0,
    /// or the product on oneDNN when it is the backend and has an implementation. True when done.
    private static func doneWithoutBLAS(type: OneDNN.DataType, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                        a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
                                        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, varyingShape: Bool) -> Bool {
        if m == 0 || n == 0 { return true }
        if k == 0 { scale(c, m: m, n: n, ldc: ldc, beta: beta); return true }
        return backend == .onednn
            && OneDNN.matmul(type: type, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                             a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, varyingShape: varyingShape)
    }

    /// C = beta · C (what BLAS does for k = 0, without calling it with k = 0).
    static func scale(_ c: UnsafeMutablePointer<Float>, m: Int, n: Int, ldc: Int, beta: Float) {
        for i in 0..<m {
            let row = c + i * ldc
            for j in 0..<n { row[j] = beta == 0 ? 0 : row[j] * beta }
        }
    }

    /// Sets the threads one product called outside a pool job uses: OpenBLAS's (process-wide)
    /// and the calling thread's OpenMP team width, which oneDNN uses.
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        omp_set_num_threads(Int32(max(1, n)))
    }

    /// One line for start-up logs: the library, what it dispatches, and how bf16 products run.
    public static func summary(backend: GEMMBackend, precision: String) -> String {
        var line: String
        switch backend {
        case .onednn: line = "gemm onednn \(OneDNN.version) (isa \(OneDNN.effectiveISA))"
        case .openblas: line = "gemm openblas (kernel \(kernelName))"
        }
        switch precision {
        case "bf16": break
        case "fp16": return line + ", precision fp16 (operands rounded to fp16, fp32 products: no fp16 matmul on this CPU; dynamic loss scaling)"
        case "fp8": return line + ", precision fp8 (simulated: e4m3/e5m2-rounded operands with delayed scaling, fp32 products; no speedup)"
        default: return line + ", precision \(precision)"
        }
        switch (backend, OneDNN.bf16Support) {
        case (.onednn, .native): line += ", precision bf16 (native AVX512_BF16)"
        case (.onednn, .emulated): line += ", precision bf16 (emulated by oneDNN: this CPU has no AVX512_BF16)"
        case (.onednn, .unavailable): line += ", precision bf16 (fp32 fallback: oneDNN has no bf16 matmul on this CPU; bf16 operands widened to fp32)"
        case (.openblas, _): line += ", precision bf16 (fp32 products on bf16-rounded operands: OpenBLAS has no bf16 kernel here)"
        }
        return line
    }

    /// OpenBLAS's thread count.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// The kernel family OpenBLAS chose ("Haswell", "Cooperlake", …; `OPENBLAS_CORETYPE` forces
    /// one). Results are bitwise reproducible for one kernel family and thread count only.
    public static var kernelName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }
}

/// fp32 ↔ bf16 conversion (round to nearest even; subnormal inputs become zero, as AVX512_BF16's
/// conversion does, so every CPU gives the same bits).
public enum BF16 {
    public static func convert(_ source: UnsafePointer<Float>, to destination: UnsafeMutablePointer<UInt16>, count: Int) {
        zt_f32_to_bf16(source, destination, count)
    }

    /// `rows` × `cols` from `source` (row stride `sourceStride`) into `destination` (row stride `destinationStride`).
    public static func convert(_ source: UnsafePointer<Float>, sourceStride: Int, to destination: UnsafeMutablePointer<UInt16>,
                               destinationStride: Int, rows: Int, cols: Int) {
        zt_f32_to_bf16_rows(source, sourceStride, destination, destinationStride, rows, cols)
    }

    public static func widen(_ source: UnsafePointer<UInt16>, to destination: UnsafeMutablePointer<Float>, count: Int) {
        zt_bf16_to_f32(source, destination, count)
    }

    /// True when the conversion uses the CPU's AVX512_BF16 instructions.
    public static var nativeConversion: Bool { zt_bf16_native() != 0 }
}
