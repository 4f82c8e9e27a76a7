@testable import Tensor
import Testing

/// fp16 and fp8 rounding against values worked out by hand: round to nearest with ties to even,
/// overflow (fp16: to inf; fp8: saturating at ±max), subnormals, NaN.
@Suite struct LowPrecisionRoundingTests {
    static func p(_ e: Int) -> Float { Float(sign: .plus, exponent: e, significand: 1) }

    /// (value, fp16 bits).
    static let fp16Cases: [(Float, UInt16)] = [
        (1, 0x3c00), (-2, 0xc000), (0, 0x0000), (-0.0, 0x8000), (0.1, 0x2e66), (65504, 0x7bff),
        (65519.99, 0x7bff),          // just under 65504 + half an ulp (16): down
        (65520, 0x7c00),             // the tie above the largest finite: to even, which is inf
        (1e6, 0x7c00), (-1e6, 0xfc00), (.infinity, 0x7c00), (-.infinity, 0xfc00),
        (1 + p(-11), 0x3c00),        // tie between 1 (even) and 1 + 2⁻¹⁰: down
        (1 + 3 * p(-11), 0x3c02),    // tie between 1 + 2⁻¹⁰ (odd) and 1 + 2⁻⁹: up
        (p(-14), 0x0400),            // smallest normal
        (1023 * p(-24), 0x03ff),     // largest subnormal
        (1023.5 * p(-24), 0x0400),   // tie between 0x3ff (odd) and the smallest normal: up
        (p(-24), 0x0001),            // smallest subnormal
        (p(-25), 0x0000),            // tie between 0 (even) and 2⁻²⁴: zero
        (1.0001 * p(-25), 0x0001),   // above the tie: up
        (1.5 * p(-24), 0x0002), (2.5 * p(-24), 0x0002), (-3.5 * p(-24), 0x8004),
        (p(-30), 0x0000), (-p(-30), 0x8000),
    ]

    @Test func fp16HandCases() {
        for (value, bits) in Self.fp16Cases {
            #expect(FP16.encode(value) == bits, "\(value): \(String(FP16.encode(value), radix: 16)), expected \(String(bits, radix: 16))")
        }
        #expect(FP16.encode(.nan) & 0x7c00 == 0x7c00 && FP16.encode(.nan) & 0x3ff != 0)
        #expect(FP16.decode(0x7bff) == 65504 && FP16.decode(0x0001) == Self.p(-24) && FP16.decode(0x03ff) == 1023 * Self.p(-24))
        #expect(FP16.decode(0xfc00) == -.infinity && FP16.decode(0x7e00).isNaN)
        for bits in UInt16(0)...UInt16(0x7bff) { #expect(FP16.encode(FP16.decode(bits)) == bits) }
    }

    /// The array paths (8 at a time, then a tail) agree with the scalar one, and with Swift's own Float16.
    @Test func fp16ArraysMatchTheScalarConversion() {
        var values = Self.fp16Cases.map(\.0)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<997 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        var bits = [UInt16](repeating: 0, count: values.count), rounded = [Float](repeating: 0, count: values.count)
        var widened = [Float](repeating: 0, count: values.count)
        FP16.convert(values, to: &bits, count: values.count)
        FP16.round(values, to: &rounded, count: values.count)
        FP16.widen(bits, to: &widened, count: values.count)
        for i in values.indices {
            #expect(bits[i] == FP16.encode(values[i]))
            #expect(rounded[i].bitPattern == widened[i].bitPattern || (rounded[i].isNaN && widened[i].isNaN))
            if !values[i].isNaN { #expect(bits[i] == Float16(values[i]).bitPattern, "\(values[i])") }
        }
    }

    /// (value, e4m3 value, e5m2 value).
    static let fp8Cases: [(Float, Float, Float)] = [
        (1, 1, 1), (-1, -1, -1), (0, 0, 0),
        (1.0625, 1, 1),              // e4m3: tie between 1 (even) and 1.125; e5m2: nearer 1
        (1.1875, 1.25, 1.25),        // e4m3: tie between 1.125 (odd) and 1.25: up
        (1.125, 1.125, 1),           // e5m2: tie between 1 (even) and 1.25: down
        (1.375, 1.375, 1.5),         // e5m2: tie between 1.25 (odd) and 1.5: up
        (448, 448, 448), (460, 448, 448),
        (470, 448, 448),             // e4m3: nearest would be 480, which e4m3 has not: saturates
        (-1e9, -448, -57344), (57344, 448, 57344),
        (61440, 448, 57344),         // e5m2: tie between 57344 and 65536 (inf in IEEE): saturates
        (p(-6), p(-6), p(-6)),       // e4m3's smallest normal
        (p(-9), p(-9), p(-9)),       // e4m3's smallest subnormal
        (p(-10), 0, p(-10)),         // e4m3: tie between 0 (even) and 2⁻⁹: zero
        (1.5 * p(-9), p(-8), 1.5 * p(-9)),  // e4m3: tie between 2⁻⁹ (odd) and 2 · 2⁻⁹: up
        (p(-16), 0, p(-16)),         // e5m2's smallest subnormal
        (p(-17), 0, 0),              // e5m2: tie between 0 and 2⁻¹⁶: zero
        (3 * p(-17), 0, 2 * p(-16)), // e5m2: tie between 2⁻¹⁶ (odd) and 2⁻¹⁵: up
    ]

    @Test func fp8HandCases() {
        for (value, e4m3, e5m2) in Self.fp8Cases {
            #expect(FP8.round(value, .e4m3) == e4m3, "e4m3 \(value): \(FP8.round(value, .e4m3)), expected \(e4m3)")
            #expect(FP8.round(value, .e5m2) == e5m2, "e5m2 \(value): \(FP8.round(value, .e5m2)), expected \(e5m2)")
        }
        // Not saturated: infinities and NaN pass through.
        #expect(FP8.round(.infinity, .e4m3) == .infinity && FP8.round(-.infinity, .e5m2) == -.infinity)
        #expect(FP8.round(.nan, .e4m3).isNaN)
        #expect(FP8.encode(1, .e4m3) == 0x38 && FP8.encode(448, .e4m3) == 0x7e && FP8.encode(-Self.p(-9), .e4m3) == 0x81)
        #expect(FP8.encode(1, .e5m2) == 0x3c && FP8.encode(57344, .e5m2) == 0x7b && FP8.encode(Self.p(-16), .e5m2) == 0x01)
        #expect(FP8.decode(0x7f, .e4m3).isNaN && FP8.decode(0x7c, .e5m2) == .infinity && FP8.decode(0x7d, .e5m2).isNaN)
        for format in FP8Format.allCases {
            for code in 0...255 {
                let v = FP8.decode(UInt8(code), format)
                guard v.isFinite else { continue }
                #expect(FP8.encode(v, format) == UInt8(code), "\(format) code \(code): \(v)")
                #expect(FP8.round(v, format) == v)
            }
        }
    }

    /// Per-tensor delayed scaling: a step's casts all use max / max(history of earlier steps'
    /// amaxes); the step's amax is the largest of its casts' (or what the owner records for it).
    @Test func fp8DelayedScaling() {
        let s = FP8Scaling(format: .e4m3, historyLength: 2)
        var used: [Float] = []
        for step: [Float] in [[2, 1], [4], [1, 0.5], [1], [0]] {
            for amax in step { s.cast { used.append($0); return amax } }
            #expect(s.stepAmax == step.max()!)
            s.record(s.stepAmax)
        }
        #expect(used == [1, 1, 224, 112, 112, 112, 448])
        #expect(s.amaxHistory == [1, 0] && s.scale == 448)
        // A reduced amax larger than the own one wins; discarded casts do not count.
        s.cast { _ in 7 }
        s.discardStep()
        s.cast { _ in 2 }
        s.record(8)
        #expect(s.amaxHistory == [0, 8] && s.scale == 56)
        s.restore([4, 1])
        #expect(s.scale == 112 && s.stepAmax == 0 && s.amaxHistory == [4, 1])
        s.record(0)
        #expect(s.amaxHistory == [1, 0])
        let x: [Float] = [0.5, -3, 2000, .infinity]
        var out = [Float](repeating: 0, count: 4)
        let amax = FP8.quantize(x, to: &out, count: 4, scale: 0.25, format: .e4m3)
        #expect(amax == 2000 && out[0] == 0.5 && out[1] == -3 && out[2] == 448 * 4 && out[3] == .infinity)
    }
}
