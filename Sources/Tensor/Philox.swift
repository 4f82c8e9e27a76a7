/// Philox-4x32-10 counter-based random numbers (Salmon et al., SC'11).
///
/// Element `i` of stream `s` under seed `k` is a pure function of (k, s, i), so a buffer
/// filled by one thread or by many gets the same numbers, and a resumed run can regenerate
/// any step's numbers from the step index alone — no RNG state to save.
public struct Philox: Sendable, Hashable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// The 4 × 32 random bits for counter (index, stream).
    @inlinable
    public func block(index: UInt64, stream: UInt64) -> SIMD4<UInt32> {
        var c0 = UInt32(truncatingIfNeeded: index)
        var c1 = UInt32(truncatingIfNeeded: index >> 32)
        var c2 = UInt32(truncatingIfNeeded: stream)
        var c3 = UInt32(truncatingIfNeeded: stream >> 32)
        var k0 = UInt32(truncatingIfNeeded: seed)
        var k1 = UInt32(truncatingIfNeeded: seed >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n1 = UInt32(truncatingIfNeeded: p1)
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            let n3 = UInt32(truncatingIfNeeded: p0)
            c0 = n0; c1 = n1; c2 = n2; c3 = n3
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return SIMD4(c0, c1, c2, c3)
    }

    /// A uniform Float in [0, 1) (24 random bits).
    @inlinable
    public func uniform(index: UInt64, stream: UInt64) -> Float {
        Float(block(index: index, stream: stream)[0] >> 8) * (1.0 / 16_777_216.0)
    }

    /// A uniform Double in [0, 1) (53 random bits).
    @inlinable
    public func uniformDouble(index: UInt64, stream: UInt64) -> Double {
        let b = block(index: index, stream: stream)
        let bits = (UInt64(b[0]) << 21) ^ UInt64(b[1] >> 11)
        return Double(bits & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A standard normal sample (Box–Muller on two uniforms of the same block).
    @inlinable
    public func normal(index: UInt64, stream: UInt64) -> Float {
        let b = block(index: index, stream: stream)
        let u1 = (Double(b[0]) + 1) / 4_294_967_297.0   // (0, 1]
        let u2 = Double(b[1]) / 4_294_967_296.0
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// An integer uniform in 0..<bound.
    @inlinable
    public func below(_ bound: Int, index: UInt64, stream: UInt64) -> Int {
        precondition(bound > 0)
        return Int(uniformDouble(index: index, stream: stream) * Double(bound)) % bound
    }

    /// Fills `dst` with uniform values in [low, high); element i uses counter `first + i`.
    public func fillUniform(_ dst: UnsafeMutableBufferPointer<Float>, low: Float, high: Float,
                            stream: UInt64, first: UInt64 = 0) {
        let span = high - low
        for i in 0..<dst.count { dst[i] = low + span * uniform(index: first + UInt64(i), stream: stream) }
    }

    /// Fills `dst` with normal(mean, std) values; element i uses counter `first + i`.
    public func fillNormal(_ dst: UnsafeMutableBufferPointer<Float>, mean: Float, std: Float,
                           stream: UInt64, first: UInt64 = 0) {
        for i in 0..<dst.count { dst[i] = mean + std * normal(index: first + UInt64(i), stream: stream) }
    }

    /// Derives a stream id from a list of small integers (step, micro-batch, layer, …).
    public static func stream(_ parts: UInt64...) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for p in parts {
            h ^= p
            h = h &* 0x0000_0100_0000_01B3
            h ^= h >> 29
        }
        return h
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
