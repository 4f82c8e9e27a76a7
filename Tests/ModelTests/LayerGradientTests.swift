import Foundation
import Model
import Tensor
import Testing

/// Every layer's backward against central finite differences on small random shapes.
@Suite struct LayerGradientTests {
    let pool = ThreadPool(threads: 2)

    @Test func linear() {
        let (n, i, o) = (3, 5, 4)
        let x = randomBuffer(n * i, seed: 1), w = randomBuffer(o * i, seed: 2), r = randomBuffer(n * o, seed: 3)
        let y = FloatBuffer(count: n * o), dx = FloatBuffer(count: n * i), dw = FloatBuffer(count: o * i)
        Linear.backward(dy: r.pointer, x: x.pointer, weight: w.pointer, dx: dx.pointer, dWeight: dw.pointer,
                        rows: n, inFeatures: i, outFeatures: o)
        expectGradientsMatch("linear", params: [("x", x.buffer), ("w", w.buffer)], analytic: [dx.toArray(), dw.toArray()]) {
            Linear.forward(x: x.pointer, weight: w.pointer, y: y.pointer, rows: n, inFeatures: i, outFeatures: o)
            return project(y.pointer, r)
        }
    }

    @Test func rmsNorm() {
        let (n, c) = (4, 8)
        let x = randomBuffer(n * c, seed: 4), w = randomBuffer(c, seed: 5), r = randomBuffer(n * c, seed: 6)
        let y = FloatBuffer(count: n * c), rstd = FloatBuffer(count: n), dx = FloatBuffer(count: n * c), dw = FloatBuffer(count: c)
        RMSNorm.forward(x: x.pointer, weight: w.pointer, y: y.pointer, rstd: rstd.pointer, rows: n, channels: c, eps: 1e-5, pool: pool)
        RMSNorm.backward(dy: r.pointer, x: x.pointer, weight: w.pointer, rstd: rstd.pointer, dx: dx.pointer, dWeight: dw.pointer,
                         rows: n, channels: c, accumulate: false, pool: pool)
        expectGradientsMatch("rmsnorm", params: [("x", x.buffer), ("w", w.buffer)], analytic: [dx.toArray(), dw.toArray()]) {
            RMSNorm.forward(x: x.pointer, weight: w.pointer, y: y.pointer, rstd: rstd.pointer, rows: n, channels: c, eps: 1e-5, pool: pool)
            return project(y.pointer, r)
        }
    }

    @Test func layerNorm() {
        let (n, c) = (4, 8)
        let x = randomBuffer(n * c, seed: 7), w = randomBuffer(c, seed: 8), b = randomBuffer(c, seed: 9), r = randomBuffer(n * c, seed: 10)
        let y = FloatBuffer(count: n * c), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
        let dx = FloatBuffer(count: n * c), dw = FloatBuffer(count: c), db = FloatBuffer(count: c)
        LayerNorm.forward(x: x.pointer, weight: w.pointer, bias: b.pointer, y: y.pointer, mean: mean.pointer, rstd: rstd.pointer,
                          rows: n, channels: c, eps: 1e-5, pool: pool)
        LayerNorm.backward(dy: r.pointer, x: x.pointer, weight: w.pointer, mean: mean.pointer, rstd: rstd.pointer, dx: dx.pointer,
                           dWeight: dw.pointer, dBias: db.pointer, rows: n, channels: c, accumulate: false, pool: pool)
        expectGradientsMatch("layernorm", params: [("x", x.buffer), ("w", w.buffer), ("b", b.buffer)],
                             analytic: [dx.toArray(), dw.toArray(), db.toArray()]) {
            LayerNorm.forward(x: x.pointer, weight: w.pointer, bias: b.pointer, y: y.pointer, mean: mean.pointer, rstd: rstd.pointer,
                              rows: n, channels: c, eps: 1e-5, pool: pool)
            return project(y.pointer, r)
        }
    }

    @Test func rotaryEmbedding() {
        let rope = RotaryEmbedding(headDim: 8, maxPositions: 16, theta: 10000)
        let (b, t, h, d) = (2, 5, 2, 8)
        let x = randomBuffer(b * t * h * d, seed: 11), r = randomBuffer(b * t * h * d, seed: 12)
        let y = FloatBuffer(count: x.count), dx = FloatBuffer(count: x.count)
        dx.copy(from: r)
        rope.apply(dx.pointer, batch: b, seqLen: t, heads: h, inverse: true)
        expectGradientsMatch("rope", params: [("x", x.buffer)], analytic: [dx.toArray()]) {
            y.copy(from: x)
            rope.apply(y.pointer, batch: b, seqLen: t, heads: h)
            return project(y.pointer, r)
        }
    }

    @Test(arguments: [nil, 1, 3] as [Int?])
    func attention(window: Int?) {
        let (b, t, h, hkv, d) = (2, 6, 4, 2, 4)
        let q = randomBuffer(b * t * h * d, seed: 13), k = randomBuffer(b * t * hkv * d, seed: 14)
        let v = randomBuffer(b * t * hkv * d, seed: 15), r = randomBuffer(b * t * h * d, seed: 16)
        let out = FloatBuffer(count: q.count), probs = FloatBuffer(count: b * h * AttentionBlocks(seqLen: t, window: window).probsPerHead)
        let dq = FloatBuffer(count: q.count), dk = FloatBuffer(count: k.count), dv = FloatBuffer(count: v.count)
        func run() {
            Attention.forward(q: q.pointer, k: k.pointer, v: v.pointer, out: out.pointer, probs: probs.pointer,
                              batch: b, seqLen: t, heads: h, kvHeads: hkv, headDim: d, window: window, pool: pool)
        }
        run()
        Attention.backward(dOut: r.pointer, q: q.pointer, k: k.pointer, v: v.pointer, probs: probs.pointer,
                           dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, batch: b, seqLen: t, heads: h, kvHeads: hkv,
                           headDim: d, window: window, pool: pool)
        expectGradientsMatch("attention(window \(String(describing: window)))",
                             params: [("q", q.buffer), ("k", k.buffer), ("v", v.buffer)],
                             analytic: [dq.toArray(), dk.toArray(), dv.toArray()]) {
            run()
            return project(out.pointer, r)
        }
    }

    @Test func slidingWindowMatchesMaskedFullAttention() {
        // Reference: full causal attention with scores outside the window masked to -inf.
        let (t, d, w) = (7, 4, 3)
        let q = randomBuffer(t * d, seed: 17), k = randomBuffer(t * d, seed: 18), v = randomBuffer(t * d, seed: 19)
        let out = FloatBuffer(count: t * d), probs = FloatBuffer(count: AttentionBlocks(seqLen: t, window: w).probsPerHead)
        Attention.forward(q: q.pointer, k: k.pointer, v: v.pointer, out: out.pointer, probs: probs.pointer,
                          batch: 1, seqLen: t, heads: 1, kvHeads: 1, headDim: d, window: w, pool: pool)
        for i in 0..<t {
            var s = [Double](repeating: -.infinity, count: t)
            for j in max(0, i - w + 1)...i {
                s[j] = (0..<d).reduce(0.0) { $0 + Double(q.pointer[i * d + $1] * k.pointer[j * d + $1]) } / Double(d).squareRoot()
            }
            let m = s.max()!
            let e = s.map { exp($0 - m) }
            let z = e.reduce(0, +)
            for c in 0..<d {
                let expected = (0..<t).reduce(0.0) { $0 + e[$1] / z * Double(v.pointer[$1 * d + c]) }
                #expect(abs(Double(out.pointer[i * d + c]) - expected) < 1e-5)
            }
        }
    }

    /// The blocked GEMM kernel against the plain per-position loops, across block boundaries
    /// (T = 150 spans three 64-row blocks), with and without a window, with GQA.
    @Test(arguments: [nil, 1, 5, 70, 200] as [Int?])
    func blockedAttentionMatchesReferenceLoops(window: Int?) {
        let (b, t, h, hkv, d) = (2, 150, 4, 2, 8)
        let q = randomBuffer(b * t * h * d, seed: 31), k = randomBuffer(b * t * hkv * d, seed: 32)
        let v = randomBuffer(b * t * hkv * d, seed: 33), dOut = randomBuffer(b * t * h * d, seed: 34)
        let out = FloatBuffer(count: q.count), probs = FloatBuffer(count: b * h * AttentionBlocks(seqLen: t, window: window).probsPerHead)
        let refOut = FloatBuffer(count: q.count), refProbs = FloatBuffer(count: b * h * t * Attention.span(seqLen: t, window: window))
        let dq = FloatBuffer(count: q.count), dk = FloatBuffer(count: k.count), dv = FloatBuffer(count: v.count)
        let rdq = FloatBuffer(count: q.count), rdk = FloatBuffer(count: k.count), rdv = FloatBuffer(count: v.count)
        Attention.forward(q: q.pointer, k: k.pointer, v: v.pointer, out: out.pointer, probs: probs.pointer,
                          batch: b, seqLen: t, heads: h, kvHeads: hkv, headDim: d, window: window, pool: pool)
        ReferenceAttention.forward(q: q.pointer, k: k.pointer, v: v.pointer, out: refOut.pointer, probs: refProbs.pointer,
                                   batch: b, seqLen: t, heads: h, kvHeads: hkv, headDim: d, window: window, pool: pool)
        Attention.backward(dOut: dOut.pointer, q: q.pointer, k: k.pointer, v: v.pointer, probs: probs.pointer,
                           dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, batch: b, seqLen: t, heads: h, kvHeads: hkv,
                           headDim: d, window: window, pool: pool)
        ReferenceAttention.backward(dOut: dOut.pointer, q: q.pointer, k: k.pointer, v: v.pointer, probs: refProbs.pointer,
                                    dq: rdq.pointer, dk: rdk.pointer, dv: rdv.pointer, batch: b, seqLen: t, heads: h, kvHeads: hkv,
                                    headDim: d, window: window, pool: pool)
        for (name, x, y) in [("out", out, refOut), ("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)] {
            var worst: Float = 0
            for i in 0..<x.count { worst = max(worst, abs(x.pointer[i] - y.pointer[i])) }
            #expect(worst < 1e-5, "\(name) differs from the reference loops by \(worst) (window \(String(describing: window)))")
        }
    }

    @Test func swiGLUAndGELU() {
        let n = 24
        let g = randomBuffer(n, seed: 20), u = randomBuffer(n, seed: 21), r = randomBuffer(n, seed: 22)
        let h = FloatBuffer(count: n), dg = FloatBuffer(count: n), du = FloatBuffer(count: n)
        SwiGLU.backward(dh: r.pointer, gate: g.pointer, up: u.pointer, dGate: dg.pointer, dUp: du.pointer, count: n)
        expectGradientsMatch("swiglu", params: [("gate", g.buffer), ("up", u.buffer)], analytic: [dg.toArray(), du.toArray()]) {
            SwiGLU.forward(gate: g.pointer, up: u.pointer, h: h.pointer, count: n)
            return project(h.pointer, r)
        }
        let dx = FloatBuffer(count: n)
        GELU.backward(dy: r.pointer, x: g.pointer, dx: dx.pointer, count: n)
        expectGradientsMatch("gelu", params: [("x", g.buffer)], analytic: [dx.toArray()]) {
            GELU.forward(x: g.pointer, y: h.pointer, count: n)
            return project(h.pointer, r)
        }
    }

    @Test func crossEntropy() {
        let (n, v) = (5, 7)
        let logits = randomBuffer(n * v, seed: 23)
        let targets: [Int32] = [0, 6, 3, 3, 1]
        let lse = FloatBuffer(count: n), d = FloatBuffer(count: n * v)
        targets.withUnsafeBufferPointer { t in
            _ = CrossEntropy.forward(logits: logits.pointer, targets: t, logSumExp: lse.pointer, rows: n, vocab: v, pool: pool)
            CrossEntropy.backward(logits: logits.pointer, targets: t, logSumExp: lse.pointer, dLogits: d.pointer,
                                  rows: n, vocab: v, scale: 1, pool: pool)
        }
        expectGradientsMatch("cross-entropy", params: [("logits", logits.buffer)], analytic: [d.toArray()]) {
            targets.withUnsafeBufferPointer { t in
                Double(CrossEntropy.forward(logits: logits.pointer, targets: t, logSumExp: lse.pointer, rows: n, vocab: v, pool: pool))
            }
        }
    }

    @Test func embedding() {
        let (v, c) = (5, 3)
        let table = randomBuffer(v * c, seed: 24), r = randomBuffer(4 * c, seed: 25)
        let tokens: [Int32] = [1, 4, 1, 0]
        let x = FloatBuffer(count: 4 * c), dTable = FloatBuffer(count: v * c)
        tokens.withUnsafeBufferPointer { Embedding.backward(tokens: $0, dx: r.pointer, dTable: dTable.pointer, channels: c) }
        expectGradientsMatch("embedding", params: [("table", table.buffer)], analytic: [dTable.toArray()]) {
            tokens.withUnsafeBufferPointer { Embedding.forward(tokens: $0, table: table.pointer, x: x.pointer, channels: c) }
            return project(x.pointer, r)
        }
    }

    @Test func dropoutIsLinearWithTheSameMaskInBackward() {
        let n = 64
        let x = randomBuffer(n, seed: 26), r = randomBuffer(n, seed: 27)
        let rng = Philox(seed: 3)
        let dx = FloatBuffer(count: n)
        dx.copy(from: r)
        Dropout.apply(dx.pointer, count: n, p: 0.25, rng: rng, stream: 9)
        let y = FloatBuffer(count: n)
        expectGradientsMatch("dropout", params: [("x", x.buffer)], analytic: [dx.toArray()]) {
            y.copy(from: x)
            Dropout.apply(y.pointer, count: n, p: 0.25, rng: rng, stream: 9)
            return project(y.pointer, r)
        }
        let dropped = (0..<n).filter { dx.pointer[$0] == 0 }.count
        #expect(dropped > 4 && dropped < 32, "about a quarter dropped, got \(dropped) of \(n)")
    }

    @Test func mixtureOfExpertsWithSharedExpert() {
        let (n, c, i, e, k) = (6, 8, 5, 4, 2)
        let moe = MixtureOfExperts(rows: n, channels: c, intermediate: i, experts: e, topK: k, sharedExperts: 1)
        let x = randomBuffer(n * c, seed: 28), r = randomBuffer(n * c, seed: 29)
        let router = randomBuffer(e * c, seed: 30)
        let gates = (0..<e).map { randomBuffer(i * c, seed: 40 + UInt64($0)) }
        let ups = (0..<e).map { randomBuffer(i * c, seed: 50 + UInt64($0)) }
        let downs = (0..<e).map { randomBuffer(c * i, seed: 60 + UInt64($0)) }
        let sg = randomBuffer(i * c, seed: 70), su = randomBuffer(i * c, seed: 71), sd = randomBuffer(c * i, seed: 72)
        func pointers(_ r: FloatBuffer, _ g: [FloatBuffer], _ u: [FloatBuffer], _ d: [FloatBuffer],
                      _ s: (FloatBuffer, FloatBuffer, FloatBuffer)) -> MoEPointers {
            MoEPointers(router: r.pointer, gate: g.map(\.pointer), up: u.map(\.pointer), down: d.map(\.pointer),
                        sharedGate: s.0.pointer, sharedUp: s.1.pointer, sharedDown: s.2.pointer)
        }
        let w = pointers(router, gates, ups, downs, (sg, su, sd))
        let gRouter = FloatBuffer(count: e * c)
        let gGates = (0..<e).map { _ in FloatBuffer(count: i * c) }, gUps = (0..<e).map { _ in FloatBuffer(count: i * c) }
        let gDowns = (0..<e).map { _ in FloatBuffer(count: c * i) }
        let gs = (FloatBuffer(count: i * c), FloatBuffer(count: i * c), FloatBuffer(count: c * i))
        let y = FloatBuffer(count: n * c), dx = FloatBuffer(count: n * c)
        moe.forward(x: x.pointer, y: y.pointer, w: w, pool: pool)
        moe.backward(dy: r.pointer, x: x.pointer, dx: dx.pointer, w: w, grads: pointers(gRouter, gGates, gUps, gDowns, gs),
                     auxGradient: [Float](repeating: 0, count: e), pool: pool)
        var params: [(String, UnsafeMutableBufferPointer<Float>)] = [("x", x.buffer), ("router", router.buffer)]
        var analytic = [dx.toArray(), gRouter.toArray()]
        for j in 0..<e {
            params += [("w1.\(j)", gates[j].buffer), ("w3.\(j)", ups[j].buffer), ("w2.\(j)", downs[j].buffer)]
            analytic += [gGates[j].toArray(), gUps[j].toArray(), gDowns[j].toArray()]
        }
        params += [("shared.gate", sg.buffer), ("shared.up", su.buffer), ("shared.down", sd.buffer)]
        analytic += [gs.0.toArray(), gs.1.toArray(), gs.2.toArray()]
        // `w` holds raw pointers: keep the buffers alive through the whole check.
        withExtendedLifetime((router, gates, ups, downs, sg, su, sd)) {
            expectGradientsMatch("moe", params: params, analytic: analytic, eps: 1e-3, tolerance: 1e-2) {
                moe.forward(x: x.pointer, y: y.pointer, w: w, pool: pool)
                return project(y.pointer, r)
            }
        }
    }
}
