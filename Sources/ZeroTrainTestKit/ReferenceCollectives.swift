import Common
import Comm

/// Deterministic test inputs and the direct (non-ring) computation of every collective's result,
/// in exactly the ring's summation order, so results can be compared bit for bit.
///
/// Used by the tests and the test rank process; cheap enough for millions of elements.
public enum ReferenceCollectives {
    /// Input element `index` of `rank` for `seed`: magnitudes spread over 2^-8...2^8 so that the
    /// summation order changes the low bits.
    @inline(__always)
    public static func input(seed: UInt64, rank: Int, index: Int) -> Float {
        var z = seed &+ UInt64(rank) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let mantissa = Float(Int64(bitPattern: z) >> 40) / Float(1 << 23)   // [-1, 1)
        let exponent = Int((z >> 8) & 15) - 8
        return mantissa * Float(sign: .plus, exponent: exponent, significand: 1)
    }

    /// Fills `buffer` with `input(seed:rank:index:)`.
    public static func fill(_ buffer: UnsafeMutableBufferPointer<Float>, seed: UInt64, rank: Int) {
        for i in 0..<buffer.count { buffer[i] = input(seed: seed, rank: rank, index: i) }
    }

    /// The all-reduce result: chunk c summed as x[c+1] + x[c+2] + ... + x[c] (ranks mod N).
    public static func allReduce(count: Int, worldSize n: Int, seed: UInt64, op: ProcessGroup.ReduceOp,
                                 wire: ProcessGroup.WireFormat = .float32) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        for c in 0..<n {
            for i in RingLayout.shardRange(count: count, rank: c, worldSize: n) {
                var acc = input(seed: seed, rank: (c + 1) % n, index: i)
                if n > 1 {
                    for j in 2...n {
                        let partial = wire == .bfloat16 ? BFloat16.round(acc) : acc
                        acc = partial + input(seed: seed, rank: (c + j) % n, index: i)
                    }
                }
                if op == .average { acc = acc / Float(n) }
                if wire == .bfloat16, n > 1 { acc = BFloat16.round(acc) }
                out[i] = acc
            }
        }
        return out
    }

    /// The all-gather result: shard c comes from rank c.
    public static func allGather(count: Int, worldSize n: Int, seed: UInt64,
                                 wire: ProcessGroup.WireFormat = .float32) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        for c in 0..<n {
            for i in RingLayout.shardRange(count: count, rank: c, worldSize: n) {
                let x = input(seed: seed, rank: c, index: i)
                out[i] = wire == .bfloat16 && n > 1 ? BFloat16.round(x) : x
            }
        }
        return out
    }

    /// The scalar all-reduce: ranks summed in order 0..<N.
    public static func scalars(count: Int, worldSize n: Int, seed: UInt64, op: ProcessGroup.ReduceOp) -> [Double] {
        (0..<count).map { j in
            var acc = scalarInput(seed: seed, rank: 0, index: j)
            for q in 1..<max(n, 1) { acc += scalarInput(seed: seed, rank: q, index: j) }
            return op == .average ? acc / Double(n) : acc
        }
    }

    public static func scalarInput(seed: UInt64, rank: Int, index: Int) -> Double {
        Double(input(seed: seed, rank: rank, index: index)) * 1e3 + Double(rank)
    }

    /// FNV-1a 64 over the bit patterns: equal digests mean bitwise-equal buffers (for the purpose of tests).
    public static func digest(_ values: UnsafeBufferPointer<Float>) -> UInt64 { FNV1a.hash(values) }

    public static func digest(_ values: [Float]) -> UInt64 {
        values.withUnsafeBufferPointer { digest($0) }
    }

    public static func digest(_ values: [Double]) -> UInt64 {
        var h = FNV1a()
        for v in values { h.add(littleEndian: v.bitPattern) }
        return h.value
    }
}
