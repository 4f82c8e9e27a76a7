import CDNNL

/// The int8 matmul of dynamic quantization: u8 activations × s8 weights → s32 accumulators →
/// fp32 output, C = scales[j] · Σₚ (A[i,p] − zeroPoint) · B[j,p] (+ C with `accumulate`).
///
/// The activation's zero point and the per-column output scales (activation scale × weight
/// scale) change with every call, so they are oneDNN run-time attributes
/// (`DNNL_RUNTIME_S32_VAL`, `DNNL_RUNTIME_F32_VAL`) of one cached primitive per shape; oneDNN
/// dispatches its VNNI kernels (vpdpbusd) where the CPU has AVX512_VNNI or AVX_VNNI.
extension OneDNN {
    struct Int8MatmulKey: Hashable {
        let m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
        let accumulate: Bool
        let threads: Int
    }

    /// `DNNL_RUNTIME_F32_VAL` (a C union constant Swift does not import): the NaN with payload 0xd0.
    static let runtimeF32 = Float(bitPattern: 0x7fc0_00d0)

    final class Int8Matmul {
        let primitive: dnnl_primitive_t
        let a: dnnl_memory_t, b: dnnl_memory_t, c: dnnl_memory_t, scales: dnnl_memory_t, zeroPoint: dnnl_memory_t
        let args: [dnnl_exec_arg_t]

        init?(_ key: Int8MatmulKey) {
            let engine = OneDNN.engine.handle
            var aDesc = dnnl_memory_desc_t(), bDesc = dnnl_memory_desc_t(), cDesc = dnnl_memory_desc_t()
            var sDesc = dnnl_memory_desc_t(), zDesc = dnnl_memory_desc_t()
            let m = Int64(key.m), n = Int64(key.n), k = Int64(key.k)
            // B is stored as the weight [n, k] row-major: the (k × n) operand with strides (1, ldb).
            guard dnnl_memory_desc_init_by_strides(&aDesc, 2, [m, k], dnnl_u8, [Int64(key.lda), 1]) == dnnl_success,
                  dnnl_memory_desc_init_by_strides(&bDesc, 2, [k, n], dnnl_s8, [1, Int64(key.ldb)]) == dnnl_success,
                  dnnl_memory_desc_init_by_strides(&cDesc, 2, [m, n], dnnl_f32, [Int64(key.ldc), 1]) == dnnl_success,
                  dnnl_memory_desc_init_by_strides(&sDesc, 1, [n], dnnl_f32, [1]) == dnnl_success,
                  dnnl_memory_desc_init_by_strides(&zDesc, 1, [1], dnnl_s32, [1]) == dnnl_success else { return nil }
            var desc = dnnl_matmul_desc_t()
            guard dnnl_matmul_desc_init(&desc, &aDesc, &bDesc, nil, &cDesc) == dnnl_success else { return nil }
            var attr: dnnl_primitive_attr_t?
            guard dnnl_primitive_attr_create(&attr) == dnnl_success, let attr else { return nil }
            defer { dnnl_primitive_attr_destroy(attr) }
            var runtimeScale = OneDNN.runtimeF32
            var runtimeZero = Int32.min  // DNNL_RUNTIME_S32_VAL
            // One scale per output column (mask: dimension 1), one zero point for the whole input.
            guard dnnl_primitive_attr_set_output_scales(attr, 1, 1 << 1, &runtimeScale) == dnnl_success,
                  dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &runtimeZero) == dnnl_success else { return nil }
            if key.accumulate {
                var ops: dnnl_post_ops_t?
                guard dnnl_post_ops_create(&ops) == dnnl_success, let ops else { return nil }
                defer { dnnl_post_ops_destroy(ops) }
                guard dnnl_post_ops_append_sum(ops, 1) == dnnl_success,
                      dnnl_primitive_attr_set_post_ops(attr, ops) == dnnl_success else { return nil }
            }
            var pd: dnnl_primitive_desc_t?
            let created = withUnsafePointer(to: &desc) {
                dnnl_primitive_desc_create(&pd, UnsafeRawPointer($0), attr, engine, nil)
            }
            guard created == dnnl_success, let pd else { return nil }
            defer { dnnl_primitive_desc_destroy(pd) }
            var primitive: dnnl_primitive_t?
            guard dnnl_primitive_create(&primitive, pd) == dnnl_success, let primitive else { return nil }
            var ma: dnnl_memory_t?, mb: dnnl_memory_t?, mc: dnnl_memory_t?, ms: dnnl_memory_t?, mz: dnnl_memory_t?
            // DNNL_MEMORY_NONE: the handles are set before every execution.
            guard dnnl_memory_create(&ma, &aDesc, engine, nil) == dnnl_success,
                  dnnl_memory_create(&mb, &bDesc, engine, nil) == dnnl_success,
                  dnnl_memory_create(&mc, &cDesc, engine, nil) == dnnl_success,
                  dnnl_memory_create(&ms, &sDesc, engine, nil) == dnnl_success,
                  dnnl_memory_create(&mz, &zDesc, engine, nil) == dnnl_success,
                  let ma, let mb, let mc, let ms, let mz else {
                dnnl_primitive_destroy(primitive)
                return nil
            }
            self.primitive = primitive
            a = ma; b = mb; c = mc; scales = ms; zeroPoint = mz
            args = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: ma), dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: mb),
                    dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: mc),
                    dnnl_exec_arg_t(arg: DNNL_ARG_ATTR_OUTPUT_SCALES, memory: ms),
                    dnnl_exec_arg_t(arg: DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, memory: mz)]
        }

        deinit {
            for memory in [a, b, c, scales, zeroPoint] { dnnl_memory_destroy(memory) }
            dnnl_primitive_destroy(primitive)
        }
    }

    /// C (m×n, row stride ldc) = scales[j] · Σₚ (A[i,p] − aZeroPoint) · B[j,p], plus C when
    /// `accumulate`; A u8 (m×k, row stride lda), B s8 stored [n, k] (row stride ldb), scales n floats.
    /// Returns false when oneDNN has no int8 implementation here (the caller falls back).
    static func int8Matmul(m: Int, n: Int, k: Int, a: UnsafePointer<UInt8>, lda: Int, aZeroPoint: Int32,
                           b: UnsafePointer<Int8>, ldb: Int, scales: UnsafePointer<Float>, accumulate: Bool,
                           c: UnsafeMutablePointer<Float>, ldc: Int) -> Bool {
        let threads = omp_in_parallel() != 0 ? 1 : Int(omp_get_max_threads())
        let key = Int8MatmulKey(m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, accumulate: accumulate, threads: threads)
        let cache = ThreadCache.current
        guard let entry = cache.entry(for: key) else { return false }
        var zero = aZeroPoint
        let status = withUnsafeMutablePointer(to: &zero) { zp -> dnnl_status_t in
            dnnl_memory_set_data_handle(entry.a, UnsafeMutableRawPointer(mutating: a))
            dnnl_memory_set_data_handle(entry.b, UnsafeMutableRawPointer(mutating: b))
            dnnl_memory_set_data_handle(entry.c, UnsafeMutableRawPointer(c))
            dnnl_memory_set_data_handle(entry.scales, UnsafeMutableRawPointer(mutating: scales))
            dnnl_memory_set_data_handle(entry.zeroPoint, UnsafeMutableRawPointer(zp))
            return entry.args.withUnsafeBufferPointer {
                dnnl_primitive_execute(entry.primitive, cache.stream, Int32($0.count), $0.baseAddress)
            }
        }
        precondition(status == dnnl_success, "oneDNN int8 matmul \(m)×\(n)×\(k) failed (status \(status.rawValue))")
        return true
    }

    /// True when oneDNN dispatches VNNI kernels here (AVX512_VNNI, AVX_VNNI or newer).
    public static var vnni: Bool {
        _ = engine
        let isa = dnnl_get_effective_cpu_isa()
        return [dnnl_cpu_isa_avx2_vnni, dnnl_cpu_isa_avx512_core_vnni, dnnl_cpu_isa_avx512_core_bf16,
                dnnl_cpu_isa_avx512_core_amx].contains(isa)
    }
}
