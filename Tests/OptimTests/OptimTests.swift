import Foundation
import Optim
import Tensor
import Testing

@Suite struct ScheduleTests {
    @Test func cosineWithWarmupMatchesTransformers() {
        // Values from the reference trajectory (transformers get_cosine_schedule_with_warmup, warmup 2, total 8).
        let s = LRSchedule(kind: .cosine, warmupSteps: 2, totalSteps: 8, numCycles: 0.5)
        let expected = [0.0, 0.015, 0.03, 0.027990381056766583, 0.0225, 0.015, 0.007500000000000003, 0.0020096189432334192]
        for (step, lr) in expected.enumerated() { #expect(abs(s.rate(step: step, peak: 0.03) - lr) < 1e-15) }
        #expect(s.multiplier(step: 8) == 0)
        let full = LRSchedule(kind: .cosine, warmupSteps: 0, totalSteps: 10, numCycles: 1)
        #expect(abs(full.multiplier(step: 10) - 1) < 1e-12 && abs(full.multiplier(step: 5)) < 1e-12)
    }

    @Test func linearAndConstant() {
        let lin = LRSchedule(kind: .linear, warmupSteps: 4, totalSteps: 12)
        #expect(lin.multiplier(step: 2) == 0.5 && lin.multiplier(step: 4) == 1 && lin.multiplier(step: 8) == 0.5 && lin.multiplier(step: 12) == 0)
        let c = LRSchedule(kind: .constant, warmupSteps: 2, totalSteps: 100)
        #expect(c.multiplier(step: 1) == 0.5 && c.multiplier(step: 50) == 1)
    }
}

@Suite struct AdamWTests {
    /// torch.optim.AdamW, written out in Double for one scalar.
    @Test func matchesTheTorchUpdateRule() {
        let opt = AdamW(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        let p = FloatBuffer([0.5, -0.25]), m = FloatBuffer(count: 2), v = FloatBuffer(count: 2)
        var ref: [(p: Double, m: Double, v: Double)] = [(0.5, 0, 0), (-0.25, 0, 0)]
        let grads: [[Float]] = [[0.1, -0.2], [0.3, 0.05], [-0.4, 0.2]]
        for (t, g) in grads.enumerated() {
            let lr = 0.01 * Double(t + 1)
            let gb = FloatBuffer(g)
            opt.update(parameters: p.pointer, gradients: gb.pointer, m: m.pointer, v: v.pointer, count: 2, lr: lr, t: t + 1, decays: true)
            for i in 0..<2 {
                var r = ref[i]
                let gi = Double(g[i])
                r.p *= 1 - lr * 0.1
                r.m += 0.1 * (gi - r.m)
                r.v = 0.95 * r.v + 0.05 * gi * gi
                let denom = r.v.squareRoot() / (1 - pow(0.95, Double(t + 1))).squareRoot() + 1e-8
                r.p -= lr / (1 - pow(0.9, Double(t + 1))) * r.m / denom
                ref[i] = r
            }
        }
        for i in 0..<2 { #expect(abs(Double(p.pointer[i]) - ref[i].p) < 1e-6) }
    }

    @Test func noDecayWhereNotApplicable() {
        let opt = AdamW(weightDecay: 0.5)
        let p = FloatBuffer([1]), g = FloatBuffer([0]), m = FloatBuffer(count: 1), v = FloatBuffer(count: 1)
        opt.update(parameters: p.pointer, gradients: g.pointer, m: m.pointer, v: v.pointer, count: 1, lr: 0.1, t: 1, decays: false)
        #expect(p.pointer[0] == 1)
        opt.update(parameters: p.pointer, gradients: g.pointer, m: m.pointer, v: v.pointer, count: 1, lr: 0.1, t: 2, decays: true)
        #expect(abs(p.pointer[0] - 0.95) < 1e-7)
    }
}

@Suite struct ClippingTests {
    @Test func clipFactorScalesToMaxNormAndLeavesSmallNormsAlone() {
        let g = FloatBuffer([3, 4])
        let norm = GradientClipping.sumOfSquares(g.buffer).squareRoot()
        #expect(norm == 5)
        let k = GradientClipping.factor(norm: norm, maxNorm: 1)
        #expect(abs((3 * k * 3 * k + 4 * k * 4 * k).squareRoot() - 1) < 1e-5)
        #expect(GradientClipping.factor(norm: 0.5, maxNorm: 1) == 1)
        #expect(GradientClipping.factor(norm: 5, maxNorm: 0) == 1)
    }

    /// The factor applied as AdamW reads the gradients gives the bits of clipping the buffer first.
    @Test func clippingInsideAdamWEqualsClippingTheBufferFirst() {
        let n = 37  // two 16-lane blocks and a tail
        let grads = (0..<n).map { Float($0 % 7) - 3.1 }, start = (0..<n).map { Float($0) * 0.01 - 0.2 }
        let k = GradientClipping.factor(norm: 9.5, maxNorm: 1, unscale: 0.25)
        let opt = AdamW(weightDecay: 0.1)
        let p1 = FloatBuffer(start), m1 = FloatBuffer(count: n), v1 = FloatBuffer(count: n), g1 = FloatBuffer(grads)
        let p2 = FloatBuffer(start), m2 = FloatBuffer(count: n), v2 = FloatBuffer(count: n), g2 = FloatBuffer(grads.map { $0 * k })
        for t in 1...3 {
            opt.update(parameters: p1.pointer, gradients: g1.pointer, m: m1.pointer, v: v1.pointer, count: n, lr: 0.01, t: t, decays: true,
                       gradientScale: k)
            opt.update(parameters: p2.pointer, gradients: g2.pointer, m: m2.pointer, v: v2.pointer, count: n, lr: 0.01, t: t, decays: true)
        }
        #expect(p1.toArray() == p2.toArray() && m1.toArray() == m2.toArray() && v1.toArray() == v2.toArray())
        #expect(g1.toArray() == grads, "the gradients are read, not scaled in place")
    }
}

/// PyTorch GradScaler's schedule: ×2 after `growthInterval` clean updates, ×0.5 and skip on overflow.
@Suite struct DynamicLossScalerTests {
    @Test func growsAfterCleanStepsAndBacksOffOnOverflow() {
        var s = DynamicLossScaler(scale: 65536, growthInterval: 3)
        #expect(s.update(gradientsFinite: true) == .apply(unscale: 1 / 65536))
        #expect(s.update(gradientsFinite: true) == .apply(unscale: 1 / 65536))
        #expect(s.update(gradientsFinite: true) == .apply(unscale: 1 / 65536))  // the third clean one: the next is doubled
        #expect(s.scale == 131072 && s.cleanSteps == 0)
        #expect(s.update(gradientsFinite: true) == .apply(unscale: 1 / 131072))
        #expect(s.update(gradientsFinite: false) == .skip)
        #expect(s.scale == 65536 && s.cleanSteps == 0)
        #expect(s.update(gradientsFinite: false) == .skip && s.scale == 32768)
    }

    @Test func unscalingInTheClipFactorIsExact() {
        let g: [Float] = [3 * 1024, 4 * 1024]
        #expect(g.map { $0 * GradientClipping.factor(norm: 5, maxNorm: 0, unscale: 1.0 / 1024) } == [3, 4])
        #expect(GradientClipping.factor(norm: 5, maxNorm: 1, unscale: 0.5) == 0.5 * GradientClipping.coefficient(norm: 5, maxNorm: 1))
    }
}

/// The AdamW kernel's AVX-512 lanes and its portable loop give the same bits.
@Suite(.serialized) struct AdamWKernelTests {
    static func values(_ n: Int, seed: UInt64, scale: Float) -> [Float] {
        let b = FloatBuffer(count: n)
        Philox(seed: seed).fillNormal(b.buffer, mean: 0, std: scale, stream: 0)
        return b.toArray()
    }

    @Test func adamWMatchesItsPortableLoop() throws {
        try #require(Kernels.vectorised, "this CPU has no AVX-512: only the portable loop runs")
        let n = 16 * 41 + 9
        let g = Self.values(n, seed: 4, scale: 0.1), start = Self.values(n, seed: 5, scale: 0.5)
        let run = { () -> [[Float]] in
            var params = start, m = [Float](repeating: 0, count: n), s = m
            for t in 1...3 {
                AdamW(weightDecay: 0.1).update(parameters: &params, gradients: g, m: &m, v: &s, count: n, lr: 1e-3, t: t, decays: t != 2,
                                               gradientScale: 0.7)
            }
            return [params, m, s]
        }
        defer { Kernels.vectorised = true }
        let vectorised = run()
        Kernels.vectorised = false
        let portable = run()
        for (a, b) in zip(vectorised, portable) { #expect(a.map(\.bitPattern) == b.map(\.bitPattern)) }
    }
}
