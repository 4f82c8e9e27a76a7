#if canImport(Glibc)
import Glibc
#endif
import Tensor
import Testing

/// `Kernels.exp` must equal libm's expf bit for bit: the model's losses are recorded bits
/// (GoldenRunTests), and the vectorised exp replaced expf calls in the softmaxes, SwiGLU and GELU.
@Suite struct ExpTests {
    static func same(_ a: Float, _ b: Float) -> Bool { a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN) }

    @Test func everyStrideOfTheBitSpaceEqualsLibm() {
        // Every 509th bit pattern (8.4 M values: both signs, subnormals, the overflow and underflow
        // edges, inf and NaN), in blocks whose lengths are not multiples of the 8 lanes.
        let block = 4099
        var x = [Float](repeating: 0, count: block), y = x
        var mismatches = 0, first: UInt32?
        var u: UInt64 = 0
        while u < 1 << 32 {
            var n = 0
            while n < block && u < 1 << 32 { x[n] = Float(bitPattern: UInt32(u)); n += 1; u += 509 }
            x.withUnsafeBufferPointer { xs in y.withUnsafeMutableBufferPointer { ys in Kernels.exp(xs.baseAddress!, into: ys.baseAddress!, count: n) } }
            for i in 0..<n where !Self.same(y[i], expf(x[i])) {
                mismatches += 1
                if first == nil { first = x[i].bitPattern }
            }
        }
        #expect(mismatches == 0, "first mismatch at bits \(String(first ?? 0, radix: 16))")
    }

    @Test func edgesAndEveryTailLengthInPlace() {
        let edges: [Float] = [0, -0, 1, -1, 88, -88, 88.72283, 88.72284, -103.97208, -103.97209, -87.33655, -104,
                              .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        for n in 0...edges.count {
            var values = edges
            values.withUnsafeMutableBufferPointer { Kernels.exp($0.baseAddress!, into: $0.baseAddress!, count: n) }
            for i in 0..<edges.count {
                let expected = i < n ? expf(edges[i]) : edges[i]  // nothing past n is written
                #expect(Self.same(values[i], expected), "n \(n): element \(i) of \(edges[i]) is \(values[i]), expected \(expected)")
            }
        }
    }

    @Test func chunkedExpCoversTheRangeOnce() {
        let range = 3..<(3 + 2 * Kernels.expChunk + 17)
        var seen = [Int](repeating: 0, count: range.upperBound)
        Kernels.exp(of: range, { Float($0) * -0.01 }) { lo, e, k in
            for j in 0..<k {
                seen[lo + j] += 1
                #expect(Self.same(e[j], expf(Float(lo + j) * -0.01)))
            }
        }
        #expect(seen[range] .allSatisfy { $0 == 1 } && seen[..<3].allSatisfy { $0 == 0 })
    }
}

/// The C kernels' AVX-512 lanes and their portable loops give the same bits (the golden runs are
/// recorded on AVX-512 machines; a CPU without it must train the same model).
@Suite(.serialized) struct VectorKernelTests {
    static func values(_ n: Int, seed: UInt64, scale: Float) -> [Float] {
        let b = FloatBuffer(count: n)
        Philox(seed: seed).fillNormal(b.buffer, mean: 0, std: scale, stream: 0)
        return b.toArray()
    }

    /// Runs `body` with the AVX-512 lanes and with the portable loops; returns both results.
    static func bothPaths<T>(_ body: () -> T) -> (vectorised: T, portable: T) {
        let was = Kernels.vectorised
        defer { Kernels.vectorised = was }
        Kernels.vectorised = true
        let v = body()
        Kernels.vectorised = false
        return (v, body())
    }

    @Test func swiGLUAndExpMatchTheirPortableLoops() throws {
        try #require(Kernels.vectorised, "this CPU has no AVX-512: only the portable loops run")
        let n = 16 * 37 + 5
        var gate = Self.values(n, seed: 1, scale: 4), up = Self.values(n, seed: 2, scale: 1), dh = Self.values(n, seed: 3, scale: 1)
        gate[3] = 95; gate[4] = -95; gate[5] = .infinity; gate[6] = -.infinity  // lanes libm handles
        let (v, p) = Self.bothPaths { () -> [[Float]] in
            var h = [Float](repeating: 0, count: n), dGate = h, dUp = h, e = h
            Kernels.swiGLUForward(gate: gate, up: up, h: &h, count: n)
            Kernels.swiGLUBackward(dh: dh, gate: gate, up: up, dGate: &dGate, dUp: &dUp, count: n)
            Kernels.exp(gate, into: &e, count: n)
            return [h, dGate, dUp, e]
        }
        for (a, b) in zip(v, p) { #expect(zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }) }
    }
}
