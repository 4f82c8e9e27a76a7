import Tensor
import Testing

@Suite struct GEMMTests {
    /// Plain triple loop: the reference every GEMM call is checked against.
    static func reference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: [Float], b: [Float], c: [Float],
                          alpha: Float, beta: Float) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k {
                    let av = transA ? a[p * m + i] : a[i * k + p]
                    let bv = transB ? b[j * k + p] : b[p * n + j]
                    s += av * bv
                }
                out[i * n + j] = alpha * s + beta * c[i * n + j]
            }
        }
        return out
    }

    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func allTransposeCombinations(transA: Bool, transB: Bool) {
        let (m, n, k) = (5, 7, 3)
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        Philox(seed: 1).fillUniform(a.buffer, low: -1, high: 1, stream: 0)
        Philox(seed: 2).fillUniform(b.buffer, low: -1, high: 1, stream: 0)
        Philox(seed: 3).fillUniform(c.buffer, low: -1, high: 1, stream: 0)
        let expected = Self.reference(transA: transA, transB: transB, m: m, n: n, k: k, a: a.toArray(), b: b.toArray(),
                                      c: c.toArray(), alpha: 0.5, beta: 2)
        GEMM.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5,
                   a: a.pointer, lda: transA ? m : k, b: b.pointer, ldb: transB ? k : n, beta: 2, c: c.pointer, ldc: n)
        for (x, y) in zip(c.toArray(), expected) { #expect(abs(x - y) < 1e-5) }
    }
}

@Suite struct KernelTests {
    @Test(arguments: [0, 1, 15, 16, 17, 100])
    func kernelsMatchScalarLoops(n: Int) {
        let a = FloatBuffer(count: n), b = FloatBuffer(count: n)
        Philox(seed: 4).fillUniform(a.buffer, low: -2, high: 2, stream: 0)
        Philox(seed: 5).fillUniform(b.buffer, low: -2, high: 2, stream: 0)
        let av = a.toArray(), bv = b.toArray()
        #expect(abs(Kernels.dot(a.pointer, b.pointer, count: n) - zip(av, bv).map(*).reduce(0, +)) < 1e-4)
        #expect(abs(Kernels.sumOfSquares(a.pointer, count: n) - av.map { Double($0 * $0) }.reduce(0, +)) < 1e-3)
        let out = FloatBuffer(count: n)
        Kernels.add(a.pointer, b.pointer, out: out.pointer, count: n)
        #expect(out.toArray() == zip(av, bv).map(+))
        Kernels.axpy(0.5, a.pointer, into: b.pointer, count: n)
        #expect(b.toArray() == zip(av, bv).map { $1 + 0.5 * $0 })
        Kernels.scale(a.pointer, by: 3, count: n)
        #expect(a.toArray() == av.map { $0 * 3 })
        #expect(Kernels.allFinite(a.pointer, count: n))
        if n > 0 {
            a.pointer[n - 1] = .nan
            #expect(!Kernels.allFinite(a.pointer, count: n))
            a.pointer[n - 1] = .infinity
            #expect(!Kernels.allFinite(a.pointer, count: n))
        }
    }

    @Test func softmaxRowSumsToOneAndIsStable() {
        let x = FloatBuffer([1000, 1001, 999, -5])
        let r = Kernels.softmaxRow(x.pointer, count: 4)
        #expect(abs(x.toArray().reduce(0, +) - 1) < 1e-6)
        let finite = x.toArray().allSatisfy { $0.isFinite }
        #expect(finite)
        let top = r.max
        #expect(top == 1001)
    }
}

@Suite struct PhiloxTests {
    @Test func knownAnswer() {
        // Philox4x32-10 known-answer vector (Random123): counter 0, key 0.
        let z = Philox(seed: 0).block(index: 0, stream: 0)
        #expect(z == SIMD4(0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8))
    }

    @Test func sameNumbersWhateverTheSplit() {
        let rng = Philox(seed: 42)
        let whole = FloatBuffer(count: 1000)
        rng.fillNormal(whole.buffer, mean: 0, std: 1, stream: 3)
        let parts = FloatBuffer(count: 1000)
        rng.fillNormal(parts.slice(0, 400), mean: 0, std: 1, stream: 3, first: 0)
        rng.fillNormal(parts.slice(400, 600), mean: 0, std: 1, stream: 3, first: 400)
        #expect(whole.toArray() == parts.toArray())
        let v = whole.toArray()
        let mean = v.reduce(0, +) / 1000
        let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1000
        #expect(abs(mean) < 0.1 && abs(variance - 1) < 0.15)
    }

    @Test func uniformRangeAndStreamsDiffer() {
        let rng = Philox(seed: 7)
        let a = (0..<500).map { rng.uniform(index: UInt64($0), stream: 1) }
        let b = (0..<500).map { rng.uniform(index: UInt64($0), stream: 2) }
        let inRange = a.allSatisfy { $0 >= 0 && $0 < 1 }
        #expect(inRange)
        #expect(a != b)
    }
}

@Suite struct ThreadPoolTests {
    @Test(arguments: [1, 2, 3])
    func parallelForCoversEveryIndexOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        let hits = FloatBuffer(count: 1001)
        for _ in 0..<50 {
            pool.parallelFor(1001) { range in for i in range { hits.pointer[i] += 1 } }
        }
        let allFifty = hits.toArray().allSatisfy { $0 == 50 }
        #expect(allFifty)
    }
}

@Suite struct TensorViewTests {
    @Test func viewsShareStorage() {
        let t = Tensor(zeros: [2, 3])
        t[1, 2] = 5
        let r = t.reshaped([3, 2])
        #expect(r[2, 1] == 5)
        #expect(t.strides == [3, 1])
        let v = Tensor(storage: t.storage, offset: 3, shape: [3])
        #expect(v.toArray() == [0, 0, 5])
    }
}
