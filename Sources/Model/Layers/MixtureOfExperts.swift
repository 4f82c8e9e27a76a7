import Foundation
import Tensor

/// Pointers to one MoE layer's tensors (weights or their gradients), as stored [out, in].
public struct MoEPointers {
    /// (E, C)
    public var router: UnsafeMutablePointer<Float>
    /// Per expert: w1 = gate (I, C), w3 = up (I, C), w2 = down (C, I).
    public var gate: [UnsafeMutablePointer<Float>]
    public var up: [UnsafeMutablePointer<Float>]
    public var down: [UnsafeMutablePointer<Float>]
    /// Shared experts fused into one MLP of width S = I · shared: gate/up (S, C), down (C, S).
    public var sharedGate: UnsafeMutablePointer<Float>?
    public var sharedUp: UnsafeMutablePointer<Float>?
    public var sharedDown: UnsafeMutablePointer<Float>?

    public init(router: UnsafeMutablePointer<Float>, gate: [UnsafeMutablePointer<Float>], up: [UnsafeMutablePointer<Float>],
                down: [UnsafeMutablePointer<Float>], sharedGate: UnsafeMutablePointer<Float>? = nil,
                sharedUp: UnsafeMutablePointer<Float>? = nil, sharedDown: UnsafeMutablePointer<Float>? = nil) {
        self.router = router
        self.gate = gate
        self.up = up
        self.down = down
        self.sharedGate = sharedGate
        self.sharedUp = sharedUp
        self.sharedDown = sharedDown
    }
}

/// The experts' low-precision operands in mixed precision (the router stays fp32, as DeepSeek gates in fp32).
public struct MoEMixed {
    public var gate: [MixedOperands], up: [MixedOperands], down: [MixedOperands]
    public var sharedGate: MixedOperands?, sharedUp: MixedOperands?, sharedDown: MixedOperands?

    public init(gate: [MixedOperands], up: [MixedOperands], down: [MixedOperands],
                sharedGate: MixedOperands?, sharedUp: MixedOperands?, sharedDown: MixedOperands?) {
        self.gate = gate
        self.up = up
        self.down = down
        self.sharedGate = sharedGate
        self.sharedUp = sharedUp
        self.sharedDown = sharedDown
    }
}

/// The experts' int8 weights in int8 inference (the router stays fp32).
public struct MoEInt8 {
    public var gate: [Int8Operands], up: [Int8Operands], down: [Int8Operands]
    public var sharedGate: Int8Operands?, sharedUp: Int8Operands?, sharedDown: Int8Operands?

    public init(gate: [Int8Operands], up: [Int8Operands], down: [Int8Operands],
                sharedGate: Int8Operands?, sharedUp: Int8Operands?, sharedDown: Int8Operands?) {
        self.gate = gate
        self.up = up
        self.down = down
        self.sharedGate = sharedGate
        self.sharedUp = sharedUp
        self.sharedDown = sharedDown
    }
}

/// Top-k routed Mixture-of-Experts with SwiGLU experts (Mixtral), optional shared experts
/// (DeepSeekMoE) and the Switch load-balancing statistics.
///
/// Router: p = softmax(x · Wrᵀ); each token goes to its top-k experts with weights p / Σ p_topk.
/// Tokens are grouped by expert into a packed buffer (rows of one expert contiguous, in token
/// order) so each expert runs three GEMMs over only its own tokens.
public final class MixtureOfExperts {
    public let rows: Int, channels: Int, intermediate: Int, experts: Int, topK: Int, shared: Int

    /// Router probabilities (rows, E).
    public let probs: FloatBuffer
    /// Selected expert per (row, slot), and its renormalised weight.
    public private(set) var selected: [Int]
    public let weights: FloatBuffer
    /// Packed row of each (row, slot); first packed row of each expert (E + 1 entries).
    private var slotRow: [Int]
    private var expertStart: [Int]
    /// Forward scratch: the next free packed row of each expert (E) while packing.
    private var nextRow: [Int]
    /// Packed activations (rows·k, ·).
    let xPacked: FloatBuffer, gatePacked: FloatBuffer, upPacked: FloatBuffer, hPacked: FloatBuffer, outPacked: FloatBuffer
    /// Shared-expert activations (rows, S).
    let sharedGateAct: FloatBuffer, sharedUpAct: FloatBuffer, sharedH: FloatBuffer
    // Backward scratch; dWeights is d(loss)/d(weights) (rows·k).
    private let dOutPacked: FloatBuffer, dH: FloatBuffer, dGate: FloatBuffer, dUp: FloatBuffer, dXPacked: FloatBuffer, dProbs: FloatBuffer
    private let dWeights: FloatBuffer

    /// Tokens routed to each expert, summed over the k slots (for the aux loss).
    public private(set) var expertCounts: [Int]
    /// Σ over rows of the router probability of each expert (for the aux loss).
    public private(set) var probSums: [Double]

    public init(rows: Int, channels: Int, intermediate: Int, experts: Int, topK: Int, sharedExperts: Int) {
        self.rows = rows; self.channels = channels; self.intermediate = intermediate
        self.experts = experts; self.topK = topK; self.shared = intermediate * sharedExperts
        let r = rows * topK
        probs = FloatBuffer(count: rows * experts)
        selected = [Int](repeating: 0, count: r)
        weights = FloatBuffer(count: r)
        slotRow = [Int](repeating: 0, count: r)
        expertStart = [Int](repeating: 0, count: experts + 1)
        nextRow = [Int](repeating: 0, count: experts)
        xPacked = FloatBuffer(count: r * channels)
        gatePacked = FloatBuffer(count: r * intermediate)
        upPacked = FloatBuffer(count: r * intermediate)
        hPacked = FloatBuffer(count: r * intermediate)
        outPacked = FloatBuffer(count: r * channels)
        sharedGateAct = FloatBuffer(count: rows * shared)
        sharedUpAct = FloatBuffer(count: rows * shared)
        sharedH = FloatBuffer(count: rows * shared)
        dOutPacked = FloatBuffer(count: r * channels)
        dH = FloatBuffer(count: max(r * intermediate, rows * shared))
        dGate = FloatBuffer(count: max(r * intermediate, rows * shared))
        dUp = FloatBuffer(count: max(r * intermediate, rows * shared))
        dXPacked = FloatBuffer(count: r * channels)
        dProbs = FloatBuffer(count: rows * experts)
        dWeights = FloatBuffer(count: r)
        expertCounts = [Int](repeating: 0, count: experts)
        probSums = [Double](repeating: 0, count: experts)
    }

    /// x (rows, C) → y (rows, C). Saves routing and expert activations for backward.
    public func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, w: MoEPointers, mixed: MoEMixed? = nil,
                        int8: MoEInt8? = nil, pool: ThreadPool) {
        let n = rows, c = channels, e = experts, k = topK, i = intermediate
        Linear.forward(x: x, weight: w.router, y: probs.pointer, rows: n, inFeatures: c, outFeatures: e)
        for row in 0..<n { Kernels.softmaxRow(probs.pointer + row * e, count: e) }
        // Top-k with ties broken towards the lower expert index, then renormalise.
        for j in 0..<e { expertCounts[j] = 0; probSums[j] = 0 }
        selected.withUnsafeMutableBufferPointer { chosen in
            for row in 0..<n {
                let p = probs.pointer + row * e, first = row * k
                for s in 0..<k {
                    var best = -1
                    for j in 0..<e where !chosen[first..<(first + s)].contains(j) && (best < 0 || p[j] > p[best]) { best = j }
                    chosen[first + s] = best
                }
                var total: Float = 0
                for s in 0..<k { total += p[chosen[first + s]] }
                for s in 0..<k {
                    weights.pointer[first + s] = p[chosen[first + s]] / total
                    expertCounts[chosen[first + s]] += 1
                }
                for j in 0..<e { probSums[j] += Double(p[j]) }
            }
        }
        expertStart[0] = 0
        for j in 0..<e { expertStart[j + 1] = expertStart[j] + expertCounts[j] }
        for j in 0..<e { nextRow[j] = expertStart[j] }
        for row in 0..<n {
            for s in 0..<k {
                let ex = selected[row * k + s]
                let r = nextRow[ex]
                nextRow[ex] += 1
                slotRow[row * k + s] = r
                (xPacked.pointer + r * c).update(from: x + row * c, count: c)
            }
        }
        for ex in 0..<e {
            let start = expertStart[ex], cnt = expertStart[ex + 1] - start
            guard cnt > 0 else { continue }
            let xe = xPacked.pointer + start * c
            let g = gatePacked.pointer + start * i, u = upPacked.pointer + start * i, h = hPacked.pointer + start * i
            Linear.forward(x: xe, weight: w.gate[ex], y: g, rows: cnt, inFeatures: c, outFeatures: i, mixed: mixed?.gate[ex],
                           int8: int8?.gate[ex], varyingRows: true)
            Linear.forward(x: xe, weight: w.up[ex], y: u, rows: cnt, inFeatures: c, outFeatures: i, mixed: mixed?.up[ex],
                           int8: int8?.up[ex], varyingRows: true, inputConverted: true)
            SwiGLU.forward(gate: g, up: u, h: h, count: cnt * i, pool: pool)
            Linear.forward(x: h, weight: w.down[ex], y: outPacked.pointer + start * c, rows: cnt, inFeatures: i, outFeatures: c,
                           mixed: mixed?.down[ex], int8: int8?.down[ex], varyingRows: true)
        }
        let selectedWeights = weights.pointer, out = outPacked.pointer
        slotRow.withUnsafeBufferPointer { slots in
            pool.parallelFor(n, minChunk: 32) { range in
                for row in range {
                    let yr = y + row * c
                    yr.update(repeating: 0, count: c)
                    for s in 0..<k {
                        Kernels.axpy(selectedWeights[row * k + s], out + slots[row * k + s] * c, into: yr, count: c)
                    }
                }
            }
        }
        if shared > 0, let sg = w.sharedGate, let su = w.sharedUp, let sd = w.sharedDown {
            Linear.forward(x: x, weight: sg, y: sharedGateAct.pointer, rows: n, inFeatures: c, outFeatures: shared,
                           mixed: mixed?.sharedGate, int8: int8?.sharedGate)
            Linear.forward(x: x, weight: su, y: sharedUpAct.pointer, rows: n, inFeatures: c, outFeatures: shared,
                           mixed: mixed?.sharedUp, int8: int8?.sharedUp, inputConverted: true)
            SwiGLU.forward(gate: sharedGateAct.pointer, up: sharedUpAct.pointer, h: sharedH.pointer, count: n * shared, pool: pool)
            Linear.forward(x: sharedH.pointer, weight: sd, y: y, rows: n, inFeatures: shared, outFeatures: c, accumulate: true,
                           mixed: mixed?.sharedDown, int8: int8?.sharedDown)
        }
    }

    /// dy (rows, C) → dx (rows, C) (overwritten); gradients accumulate into `grads`.
    /// `auxGradient[e]` is d(total loss)/d(p[row, e]) from the load-balancing loss, the same for every row.
    public func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                         w: MoEPointers, grads: MoEPointers, mixed: MoEMixed? = nil, auxGradient: [Float], pool: ThreadPool) {
        let n = rows, c = channels, e = experts, k = topK, i = intermediate
        let dOut = dOutPacked.pointer, out = outPacked.pointer, selectedWeights = weights.pointer
        let dWeights = self.dWeights.pointer
        for row in 0..<n {
            for s in 0..<k {
                let r = slotRow[row * k + s]
                let wgt = selectedWeights[row * k + s]
                for j in 0..<c { dOut[r * c + j] = wgt * dy[row * c + j] }
                dWeights[row * k + s] = Kernels.dot(dy + row * c, out + r * c, count: c)
            }
        }
        for ex in 0..<e {
            let start = expertStart[ex], cnt = expertStart[ex + 1] - start
            guard cnt > 0 else { continue }
            let xe = xPacked.pointer + start * c
            let g = gatePacked.pointer + start * i, u = upPacked.pointer + start * i, h = hPacked.pointer + start * i
            Linear.backward(dy: dOut + start * c, x: h, weight: w.down[ex], dx: dH.pointer, dWeight: grads.down[ex],
                            rows: cnt, inFeatures: i, outFeatures: c, mixed: mixed?.down[ex], varyingRows: true)
            SwiGLU.backward(dh: dH.pointer, gate: g, up: u, dGate: dGate.pointer, dUp: dUp.pointer, count: cnt * i, pool: pool)
            let dxe = dXPacked.pointer + start * c
            Linear.backward(dy: dGate.pointer, x: xe, weight: w.gate[ex], dx: dxe, dWeight: grads.gate[ex],
                            rows: cnt, inFeatures: c, outFeatures: i, mixed: mixed?.gate[ex], varyingRows: true)
            Linear.backward(dy: dUp.pointer, x: xe, weight: w.up[ex], dx: dxe, dWeight: grads.up[ex],
                            rows: cnt, inFeatures: c, outFeatures: i, accumulateInput: true, mixed: mixed?.up[ex], varyingRows: true,
                            inputConverted: true)
        }
        for row in 0..<n {
            let dxr = dx + row * c
            dxr.update(repeating: 0, count: c)
            for s in 0..<k { Kernels.add(dXPacked.pointer + slotRow[row * k + s] * c, into: dxr, count: c) }
        }
        // Router: through the renormalised top-k weights and the aux loss, then the softmax.
        let dp = dProbs.pointer
        for row in 0..<n {
            let p = probs.pointer + row * e, d = dp + row * e
            for j in 0..<e { d[j] = auxGradient[j] }
            var total: Float = 0, weighted: Float = 0
            for s in 0..<k {
                total += p[selected[row * k + s]]
                weighted += dWeights[row * k + s] * selectedWeights[row * k + s]
            }
            for s in 0..<k { d[selected[row * k + s]] += (dWeights[row * k + s] - weighted) / total }
            var dot: Float = 0
            for j in 0..<e { dot += p[j] * d[j] }
            for j in 0..<e { d[j] = p[j] * (d[j] - dot) }
        }
        Linear.backward(dy: dp, x: x, weight: w.router, dx: dx, dWeight: grads.router,
                        rows: n, inFeatures: c, outFeatures: e, accumulateInput: true)
        if shared > 0, let sg = w.sharedGate, let su = w.sharedUp, let sd = w.sharedDown,
           let gsg = grads.sharedGate, let gsu = grads.sharedUp, let gsd = grads.sharedDown {
            Linear.backward(dy: dy, x: sharedH.pointer, weight: sd, dx: dH.pointer, dWeight: gsd,
                            rows: n, inFeatures: shared, outFeatures: c, mixed: mixed?.sharedDown)
            SwiGLU.backward(dh: dH.pointer, gate: sharedGateAct.pointer, up: sharedUpAct.pointer,
                            dGate: dGate.pointer, dUp: dUp.pointer, count: n * shared, pool: pool)
            Linear.backward(dy: dGate.pointer, x: x, weight: sg, dx: dx, dWeight: gsg,
                            rows: n, inFeatures: c, outFeatures: shared, accumulateInput: true, mixed: mixed?.sharedGate)
            Linear.backward(dy: dUp.pointer, x: x, weight: su, dx: dx, dWeight: gsu,
                            rows: n, inFeatures: c, outFeatures: shared, accumulateInput: true, mixed: mixed?.sharedUp,
                            inputConverted: true)
        }
    }
}
