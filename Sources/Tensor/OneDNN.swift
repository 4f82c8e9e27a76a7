import CDNNL
import Foundation

/// Matrix multiply through oneDNN's matmul primitive (fp32 or bf16 operands, fp32 accumulation
/// and output), with a per-thread cache of primitives keyed by shape.
///
/// Threads: Debian's libdnnl runs on OpenMP (libgomp), and so does `ThreadPool`, so a device has
/// one set of threads. A matmul called on the pool's owner thread outside a pool job uses the
/// whole team (`omp_set_num_threads`, set by the pool for its owner); a matmul called inside a
/// pool job runs single-threaded on that job's thread (nested parallelism is off). The cache key
/// holds the thread count, so a primitive is always run with the team size it was tuned for.
public enum OneDNN {
    /// The CPU engine (one per process; thread-safe).
    static let engine: Engine = Engine()

    final class Engine: @unchecked Sendable {  // Safe: a oneDNN engine is immutable after creation.
        let handle: dnnl_engine_t
        init() {
            var e: dnnl_engine_t?
            let status = dnnl_engine_create(&e, dnnl_cpu, 0)
            precondition(status == dnnl_success && e != nil, "oneDNN: cannot create the CPU engine (status \(status.rawValue))")
            handle = e!
            // One level of parallelism: a matmul inside a pool job runs on that job's thread.
            omp_set_max_active_levels(1)
        }
    }

    public enum DataType: UInt8, Sendable { case f32, bf16 }

    /// The instruction set oneDNN dispatches on this CPU (after any `ONEDNN_MAX_CPU_ISA` cap).
    public static var effectiveISA: String {
        _ = engine
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        case let other: return "isa-0x\(String(other.rawValue, radix: 16))"
        }
    }

    /// True when oneDNN computes bf16 products with the CPU's bf16 instructions; false when it
    /// emulates them (AVX-512 without AVX512_BF16) or cannot run bf16 at all.
    public static var nativeBF16: Bool {
        _ = engine
        let isa = dnnl_get_effective_cpu_isa()
        return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx
    }

    /// How bf16 products run here: with the CPU's bf16 instructions, emulated by oneDNN on plain
    /// AVX-512, or not at all (then `GEMM.bf16gemm` widens the operands to fp32).
    public enum BF16Support: String, Sendable { case native, emulated, unavailable }

    public static var bf16Support: BF16Support {
        if nativeBF16 { return .native }
        let probe = MatmulKey(type: .bf16, transA: false, transB: true, m: 16, n: 16, k: 16, lda: 16, ldb: 16, ldc: 16,
                              alpha: Float(1).bitPattern, beta: 0, threads: 1)
        return ThreadCache.current.entry(for: probe) != nil ? .emulated : .unavailable
    }

    public static var version: String {
        guard let v = dnnl_version() else { return "unknown" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.patch)"
    }

    /// C (m×n, row stride ldc) = alpha · op(A) · op(B) + beta · C, with A and B of `type`
    /// (row-major, strides as `GEMM.sgemm` documents) and C in fp32.
    /// Returns false when oneDNN has no implementation for these operands (the caller falls back).
    /// `varyingShape` (the experts of an MoE layer, whose row counts change every step): one
    /// primitive with run-time m, n and k serves every shape, instead of one primitive per shape.
    @discardableResult
    static func matmul(type: DataType, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                       a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, varyingShape: Bool = false) -> Bool {
        let threads = omp_in_parallel() != 0 ? 1 : Int(omp_get_max_threads())
        let key = MatmulKey(type: type, transA: transA, transB: transB, m: varyingShape ? -1 : m, n: varyingShape ? -1 : n,
                            k: varyingShape ? -1 : k, lda: lda, ldb: ldb, ldc: ldc,
                            alpha: alpha.bitPattern, beta: beta.bitPattern, threads: threads)
        let cache = ThreadCache.current
        guard let entry = cache.entry(for: key) else { return false }
        let status: dnnl_status_t
        if let ma = entry.a, let mb = entry.b, let mc = entry.c {
            dnnl_memory_set_data_handle(ma, UnsafeMutableRawPointer(mutating: a))
            dnnl_memory_set_data_handle(mb, UnsafeMutableRawPointer(mutating: b))
            dnnl_memory_set_data_handle(mc, UnsafeMutableRawPointer(c))
            status = entry.args.withUnsafeBufferPointer {
                dnnl_primitive_execute(entry.primitive, cache.stream, Int32($0.count), $0.baseAddress)
            }
        } else {
            // Run-time shape: memory objects with this call's dimensions.
            var descs = Matmul.descriptors(key, m: m, n: n, k: k)
            var ma: dnnl_memory_t?, mb: dnnl_memory_t?, mc: dnnl_memory_t?
            guard dnnl_memory_create(&ma, &descs.a, engine.handle, UnsafeMutableRawPointer(mutating: a)) == dnnl_success,
                  dnnl_memory_create(&mb, &descs.b, engine.handle, UnsafeMutableRawPointer(mutating: b)) == dnnl_success,
                  dnnl_memory_create(&mc, &descs.c, engine.handle, UnsafeMutableRawPointer(c)) == dnnl_success else {
                preconditionFailure("oneDNN: cannot describe a \(m)×\(n)×\(k) matmul")
            }
            defer { dnnl_memory_destroy(ma); dnnl_memory_destroy(mb); dnnl_memory_destroy(mc) }
            let args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: ma), dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: mb),
                        dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: mc)]
            status = args.withUnsafeBufferPointer {
                dnnl_primitive_execute(entry.primitive, cache.stream, Int32($0.count), $0.baseAddress)
            }
        }
        precondition(status == dnnl_success, "oneDNN matmul \(m)×\(n)×\(k) failed (status \(status.rawValue))")
        return true
    }

    /// Primitives built so far on the calling thread (for tests and the bench report).
    public static var cachedPrimitives: Int { ThreadCache.current.count }

    struct MatmulKey: Hashable {
        let type: DataType
        let transA: Bool, transB: Bool
        let m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
        let alpha: UInt32, beta: UInt32
        let threads: Int
    }

    final class Matmul {
        let primitive: dnnl_primitive_t
        /// Nil for a run-time shape (the memory objects are made per call).
        let a: dnnl_memory_t?, b: dnnl_memory_t?, c: dnnl_memory_t?
        let args: [dnnl_exec_arg_t]

        /// The operands' descriptors; dimensions of −1 in the key are run-time ones (`DNNL_RUNTIME_DIM_VAL`).
        static func descriptors(_ key: MatmulKey, m: Int, n: Int, k: Int) -> (a: dnnl_memory_desc_t, b: dnnl_memory_desc_t, c: dnnl_memory_desc_t) {
            let type = key.type == .f32 ? dnnl_f32 : dnnl_bf16
            func dim(_ d: Int) -> Int64 { d < 0 ? Int64.min : Int64(d) }
            var aDesc = dnnl_memory_desc_t(), bDesc = dnnl_memory_desc_t(), cDesc = dnnl_memory_desc_t()
            let aStrides: [Int64] = key.transA ? [1, Int64(key.lda)] : [Int64(key.lda), 1]
            let bStrides: [Int64] = key.transB ? [1, Int64(key.ldb)] : [Int64(key.ldb), 1]
            _ = dnnl_memory_desc_init_by_strides(&aDesc, 2, [dim(m), dim(k)], type, aStrides)
            _ = dnnl_memory_desc_init_by_strides(&bDesc, 2, [dim(k), dim(n)], type, bStrides)
            _ = dnnl_memory_desc_init_by_strides(&cDesc, 2, [dim(m), dim(n)], dnnl_f32, [Int64(key.ldc), 1])
            return (aDesc, bDesc, cDesc)
        }

        init?(_ key: MatmulKey) {
            var (aDesc, bDesc, cDesc) = Self.descriptors(key, m: key.m, n: key.n, k: key.k)
            guard aDesc.ndims == 2, bDesc.ndims == 2, cDesc.ndims == 2 else { return nil }
            var desc = dnnl_matmul_desc_t()
            guard dnnl_matmul_desc_init(&desc, &aDesc, &bDesc, nil, &cDesc) == dnnl_success else { return nil }
            var attr: dnnl_primitive_attr_t?
            guard dnnl_primitive_attr_create(&attr) == dnnl_success, let attr else { return nil }
            defer { dnnl_primitive_attr_destroy(attr) }
            let alpha = Float(bitPattern: key.alpha), beta = Float(bitPattern: key.beta)
            if alpha != 1 {
                var scale = alpha
                guard dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale) == dnnl_success else { return nil }
            }
            if beta != 0 {
                var ops: dnnl_post_ops_t?
                guard dnnl_post_ops_create(&ops) == dnnl_success, let ops else { return nil }
                defer { dnnl_post_ops_destroy(ops) }
                guard dnnl_post_ops_append_sum(ops, beta) == dnnl_success,
                      dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success else { return nil }
            }
            var pd: dnnl_primitive_desc_t?
            let created = withUnsafePointer(to: &desc) {
                dnnl_primitive_desc_create(&pd, UnsafeRawPointer($0), attr, OneDNN.engine.handle, nil)
            }
            guard created == dnnl_success, let pd else { return nil }
            defer { dnnl_primitive_desc_destroy(pd) }
            var primitive: dnnl_primitive_t?
            guard dnnl_primitive_create(&primitive, pd) == dnnl_success, let primitive else { return nil }
            if key.m < 0 {
                self.primitive = primitive
                a = nil; b = nil; c = nil
                args = []
                return
            }
            var ma: dnnl_memory_t?, mb: dnnl_memory_t?, mc: dnnl_memory_t?
            // DNNL_MEMORY_NONE: the handles are set before every execution.
            guard dnnl_memory_create(&ma, &aDesc, OneDNN.engine.handle, nil) == dnnl_success,
                  dnnl_memory_create(&mb, &bDesc, OneDNN.engine.handle, nil) == dnnl_success,
                  dnnl_memory_create(&mc, &cDesc, OneDNN.engine.handle, nil) == dnnl_success,
                  let ma, let mb, let mc else {
                dnnl_primitive_destroy(primitive)
                return nil
            }
            self.primitive = primitive
            a = ma; b = mb; c = mc
            args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: ma), dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: mb),
                    dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: mc)]
        }

        deinit {
            if let a, let b, let c {
                dnnl_memory_destroy(a)
                dnnl_memory_destroy(b)
                dnnl_memory_destroy(c)
            }
            dnnl_primitive_destroy(primitive)
        }
    }

    /// One thread's primitives and stream (a oneDNN stream is not thread-safe, and each primitive
    /// holds the memory objects of its last call).
    final class ThreadCache {
        let stream: dnnl_stream_t
        private var entries: [MatmulKey: Matmul?] = [:]
        private var int8Entries: [Int8MatmulKey: Int8Matmul?] = [:]

        var count: Int { entries.count + int8Entries.count }

        init() {
            var s: dnnl_stream_t?
            let status = dnnl_stream_create(&s, OneDNN.engine.handle, dnnl_stream_default_flags.rawValue)
            precondition(status == dnnl_success && s != nil, "oneDNN: cannot create a stream (status \(status.rawValue))")
            stream = s!
        }

        deinit { dnnl_stream_destroy(stream) }

        func entry(for key: MatmulKey) -> Matmul? {
            if let hit = entries[key] { return hit }
            let made = Matmul(key)
            entries[key] = made
            return made
        }

        func entry(for key: Int8MatmulKey) -> Int8Matmul? {
            if let hit = int8Entries[key] { return hit }
            let made = Int8Matmul(key)
            int8Entries[key] = made
            return made
        }

        private static let key: pthread_key_t = {
            var key = pthread_key_t()
            pthread_key_create(&key) { raw in if let raw { Unmanaged<ThreadCache>.fromOpaque(raw).release() } }
            return key
        }()

        static var current: ThreadCache {
            if let raw = pthread_getspecific(key) { return Unmanaged<ThreadCache>.fromOpaque(raw).takeUnretainedValue() }
            let cache = ThreadCache()
            pthread_setspecific(key, Unmanaged.passRetained(cache).toOpaque())
            return cache
        }
    }
}
