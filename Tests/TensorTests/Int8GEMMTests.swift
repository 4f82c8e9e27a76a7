@testable import Tensor
import Testing

@Suite struct Int8GEMMTests {
    /// Σₚ (a[i,p] − z) · b[j,p] in Int, the plain reference.
    static func reference(m: Int, n: Int, k: Int, a: [UInt8], z: Int32, b: [Int8]) -> [Int] {
        var out = [Int](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0
                for p in 0..<k { s += (Int(a[i * k + p]) - Int(z)) * Int(b[j * k + p]) }
                out[i * n + j] = s
            }
        }
        return out
    }

    static func operands(m: Int, n: Int, k: Int, seed: UInt64) -> (a: [UInt8], b: [Int8]) {
        let fa = FloatBuffer(count: m * k), fb = FloatBuffer(count: n * k)
        Philox(seed: seed).fillUniform(fa.buffer, low: 0, high: 256, stream: 0)
        Philox(seed: seed).fillUniform(fb.buffer, low: -128, high: 128, stream: 1)
        return (fa.toArray().map { UInt8(min(255, $0.rounded(.down))) }, fb.toArray().map { Int8(min(127, $0.rounded(.down))) })
    }

    /// oneDNN's u8 × s8 → s32 matmul and the portable loop give the exact integer sums (scale 1),
    /// and the same bits with scales; both with and without accumulation.
    @Test(arguments: [(1, 48, 64, Int32(60)), (5, 24, 40, Int32(0)), (7, 33, 17, Int32(127)), (3, 16, 300, Int32(42))])
    func oneDNNAndPortableAgreeExactly(m: Int, n: Int, k: Int, zeroPoint: Int32) {
        let (a, b) = Self.operands(m: m, n: n, k: k, seed: UInt64(m * 1000 + n))
        let expected = Self.reference(m: m, n: n, k: k, a: a, z: zeroPoint, b: b)
        let unit = [Float](repeating: 1, count: n)
        let scaled = (0..<n).map { Float(0.001) * Float($0 + 1) / 3 }
        for scales in [unit, scaled] {
            for accumulate in [false, true] {
                let start = (0..<(m * n)).map { Float($0 % 7) - 3 }
                let viaDNNL = FloatBuffer(start), portable = FloatBuffer(start)
                a.withUnsafeBufferPointer { ap in
                    b.withUnsafeBufferPointer { bp in
                        scales.withUnsafeBufferPointer { sp in
                            let ran = OneDNN.int8Matmul(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, aZeroPoint: zeroPoint,
                                                        b: bp.baseAddress!, ldb: k, scales: sp.baseAddress!, accumulate: accumulate,
                                                        c: viaDNNL.pointer, ldc: n)
                            #expect(ran, "oneDNN has no int8 matmul on this CPU")
                            GEMM.int8Reference(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, aZeroPoint: zeroPoint,
                                               b: bp.baseAddress!, ldb: k, scales: sp.baseAddress!, accumulate: accumulate,
                                               c: portable.pointer, ldc: n)
                        }
                    }
                }
                #expect(viaDNNL.toArray() == portable.toArray())
                if scales == unit {
                    let exact = zip(expected, start).map { Float($0) + (accumulate ? $1 : 0) }
                    #expect(portable.toArray() == exact)
                }
            }
        }
    }

    /// The backend switch reaches the portable loop: OpenBLAS selected gives the same bits.
    @Test func backendsGiveTheSameBits() {
        let (m, n, k) = (4, 20, 36)
        let (a, b) = Self.operands(m: m, n: n, k: k, seed: 9)
        let scales = (0..<n).map { Float($0 + 1) * 0.01 }
        var results: [[Float]] = []
        let saved = GEMM.backend
        defer { GEMM.backend = saved }
        for backend in GEMMBackend.allCases {
            GEMM.backend = backend
            let c = FloatBuffer(count: m * n)
            GEMM.int8gemm(m: m, n: n, k: k, a: a, lda: k, aZeroPoint: 17, b: b, ldb: k, scales: scales, c: c.pointer, ldc: n)
            results.append(c.toArray())
        }
        #expect(results[0] == results[1])
    }

    /// Activation parameters on the edge cases of ChooseQuantizationParams (values checked against PyTorch).
    @Test func activationParametersEdgeCases() {
        // all-positive input: the range widens to 0, zero point 0
        #expect(Quantization.activationParameters(min: 0.25, max: 3.81).zeroPoint == 0)
        // constant zero input: scale 0 becomes 0.1
        #expect(Quantization.activationParameters(min: 0, max: 0) == QuantizationParameters(scale: 0.1, zeroPoint: 0))
        // all-negative input: zero point at qmax
        #expect(Quantization.activationParameters(min: -2, max: -1).zeroPoint == 127)
        // a tiny range: the scale is raised to 6.1e-5
        #expect(Quantization.activationParameters(min: -1e-4, max: 2e-4).scale == Float(6.1e-5))
    }
}
