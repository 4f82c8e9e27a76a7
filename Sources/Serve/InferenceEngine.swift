import Foundation
import Model
import Tensor

/// Runs a Transformer's forward pass for inference over a batch of sequences, each with its own
/// `KVCache`: every sequence brings its new tokens — a whole prompt (prefill) or the one token
/// sampled last (decode), mixed freely in one batch — and gets the logits of its last new token.
///
/// The rows of all sequences go through each projection, norm and MLP together (one product per
/// weight per step); attention runs per (row, head) against the row's own cache. The math is
/// `Transformer.forward`'s, through the same layers (`Linear`, `RMSNorm`/`LayerNorm`,
/// `SwiGLU`/`GELU`, `MixtureOfExperts`, rotary embedding), reading the model's parameter buffer by
/// its `ParameterTable`; every dense weight is applied in `project`, the one place a quantized
/// (int8) linear path replaces the fp32 product.
///
/// One engine is used by one thread at a time (its scratch buffers are reused across steps).
public final class InferenceEngine {
    public let model: Transformer
    public var config: ModelConfig { model.config }
    private let rope: RotaryEmbedding
    private var scratch = Scratch(rows: 0, sequences: 0, config: nil)
    /// MoE layers (their routing buffers) by row count; decode batches reuse theirs.
    private var moeLayers: [Int: MixtureOfExperts] = [:]

    public init(model: Transformer) {
        self.model = model
        rope = RotaryEmbedding(headDim: model.config.headSize, maxPositions: model.config.maxSeqLen, theta: model.config.ropeTheta)
    }

    /// A cache for a sequence of up to `positions` positions (prompt + generated tokens).
    public func makeCache(positions: Int) -> KVCache { KVCache(config: config, positions: positions) }

    /// One sequence's part of a step.
    public struct Item {
        public let cache: KVCache
        public let tokens: [Int32]
        public init(cache: KVCache, tokens: [Int32]) { self.cache = cache; self.tokens = tokens }
    }

    /// Runs every item's new tokens through the model, appends their keys and values to the
    /// item's cache, and returns the logits (items, vocab) of each item's last new token.
    public func step(_ items: [Item]) throws -> [[Float]] {
        guard !items.isEmpty else { return [] }
        let c = config.hiddenSize, v = config.vocabSize, d = config.headSize
        let h = config.numAttentionHeads, hkv = config.kvHeads, qDim = h * d, kvDim = hkv * d
        // Per row: its position and its item; per item: its first row.
        var positions: [Int] = [], tokens: [Int32] = [], firstRow: [Int] = [], rowItem: [Int] = []
        for item in items {
            guard !item.tokens.isEmpty else { throw ServeError(.badInput, "a sequence brought no tokens to the step") }
            let end = item.cache.length + item.tokens.count
            guard end <= config.maxSeqLen else {
                throw ServeError(.badInput, "the sequence would reach \(end) positions, more than model.max_seq_len (\(config.maxSeqLen))")
            }
            guard config.window != nil || end <= item.cache.capacity else {
                throw ServeError(.badInput, "the sequence would reach \(end) positions, more than its cache holds (\(item.cache.capacity))")
            }
            if let bad = item.tokens.first(where: { $0 < 0 || Int($0) >= v }) {
                throw ServeError(.badInput, "token \(bad) is outside the vocabulary 0..<\(v)")
            }
            firstRow.append(tokens.count)
            rowItem += Array(repeating: firstRow.count - 1, count: item.tokens.count)
            positions += (item.cache.length..<end).map { $0 }
            tokens += item.tokens
        }
        let n = tokens.count
        if scratch.rows < n || scratch.sequences < items.count {
            scratch = Scratch(rows: max(n, scratch.rows), sequences: max(items.count, scratch.sequences), config: config)
        }
        let s = scratch
        let x = s.x.pointer
        tokens.withUnsafeBufferPointer { tok in
            Embedding.forward(tokens: tok, table: weight(.embedding), x: x, channels: c)
        }
        // Attention runs as (row, head) tasks, each chunk of tasks with its score scratch.
        let span = config.window ?? config.maxSeqLen
        for l in 0..<config.numLayers {
            norm(.inputNormWeight, .inputNormBias, layer: l, x: x, y: s.ln.pointer, rows: n)
            project(.qProj, layer: l, x: s.ln.pointer, y: s.q.pointer, rows: n)
            project(.kProj, layer: l, x: s.ln.pointer, y: s.k.pointer, rows: n)
            project(.vProj, layer: l, x: s.ln.pointer, y: s.v.pointer, rows: n)
            rope.apply(s.q.pointer, positions: positions, heads: h)
            rope.apply(s.k.pointer, positions: positions, heads: hkv)
            let q = s.q.pointer, k = s.k.pointer, val = s.v.pointer, att = s.att.pointer
            let window = config.window
            model.pool.parallelFor(n * h, minChunk: 4) { range in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: span)
                defer { scores.deallocate() }
                for task in range {
                    let row = task / h, head = task % h
                    let i = rowItem[row], cache = items[i].cache, first = firstRow[i]
                    CachedAttention.row(row - first, head: head, q: q + row * qDim + head * d, out: att + row * qDim + head * d,
                                        newKeys: k + first * kvDim, newValues: val + first * kvDim,
                                        cacheKeys: cache.keys(layer: l), cacheValues: cache.values(layer: l),
                                        capacity: cache.capacity, past: cache.length, heads: h, kvHeads: hkv, headDim: d,
                                        window: window, scores: scores)
                }
            }
            for (i, item) in items.enumerated() {
                item.cache.store(layer: l, keys: k + firstRow[i] * kvDim, values: val + firstRow[i] * kvDim, count: item.tokens.count)
            }
            project(.oProj, layer: l, x: att, y: s.branch.pointer, rows: n)
            Kernels.add(x, s.branch.pointer, out: s.mid.pointer, count: n * c)
            norm(.postNormWeight, .postNormBias, layer: l, x: s.mid.pointer, y: s.ln.pointer, rows: n)
            mlp(layer: l, x: s.ln.pointer, y: s.branch.pointer, rows: n)
            Kernels.add(s.mid.pointer, s.branch.pointer, out: x, count: n * c)
        }
        for item in items { item.cache.length += item.tokens.count }
        // The final norm and the LM head on each item's last row only.
        let m = items.count
        for (i, item) in items.enumerated() {
            (s.last.pointer + i * c).update(from: x + (firstRow[i] + item.tokens.count - 1) * c, count: c)
        }
        norm(.finalNormWeight, .finalNormBias, layer: -1, x: s.last.pointer, y: s.lastNorm.pointer, rows: m)
        project(config.tieEmbeddings ? .embedding : .lmHead, layer: -1, x: s.lastNorm.pointer, y: s.logits.pointer, rows: m)
        return (0..<m).map { Array(UnsafeBufferPointer(start: s.logits.pointer + $0 * v, count: v)) }
    }

    // MARK: layers

    @inline(__always) private func weight(_ kind: TensorKind, layer: Int = -1, expert: Int = -1) -> UnsafeMutablePointer<Float> {
        model.parameters.pointer + model.table.offset(kind, layer: layer, expert: expert)
    }

    /// x (rows, in) → y (rows, out) = x · Wᵀ for dense weight `kind` of `layer` (stored [out, in]).
    /// Every dense weight of the forward pass is applied here. The rows go in pieces of at most
    /// `Self.rowBlock`: oneDNN's fixed-shape primitives are cached per row count, so this bounds
    /// their number whatever the prompts (its run-time-dimension primitive, which needs no cache, is
    /// several times slower on a prefill's hundreds of rows: docs/benchmarks.md, Serving).
    private func project(_ kind: TensorKind, layer: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int,
                         accumulate: Bool = false) {
        let shape = model.table.entry(kind, layer: layer)!.shape
        let w = weight(kind, layer: layer)
        var start = 0
        while start < rows {
            let count = min(Self.rowBlock, rows - start)
            Linear.forward(x: x + start * shape[1], weight: w, y: y + start * shape[0], rows: count, inFeatures: shape[1],
                           outFeatures: shape[0], accumulate: accumulate, int8: model.int8(kind, layer))
            start += count
        }
    }

    /// Rows per product (see `project`).
    static let rowBlock = 64

    private func norm(_ w: TensorKind, _ b: TensorKind, layer: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int) {
        let c = config.hiddenSize, eps = Float(config.normEps)
        if config.norm == "layernorm" {
            LayerNorm.forward(x: x, weight: weight(w, layer: layer), bias: weight(b, layer: layer), y: y,
                              mean: scratch.mean.pointer, rstd: scratch.rstd.pointer, rows: rows, channels: c, eps: eps, pool: model.pool)
        } else {
            RMSNorm.forward(x: x, weight: weight(w, layer: layer), y: y, rstd: scratch.rstd.pointer, rows: rows, channels: c,
                            eps: eps, pool: model.pool)
        }
    }

    /// Block `l`'s feed-forward: x (rows, C) → y (rows, C).
    private func mlp(layer l: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows n: Int) {
        let ffn = config.ffnSize, s = scratch
        if let moe = config.moeConfig {
            let layer = moeLayer(rows: n, moe)
            let shared = moe.numSharedExperts > 0
            let w = MoEPointers(router: weight(.router, layer: l),
                                gate: (0..<moe.numExperts).map { weight(.expertGate, layer: l, expert: $0) },
                                up: (0..<moe.numExperts).map { weight(.expertUp, layer: l, expert: $0) },
                                down: (0..<moe.numExperts).map { weight(.expertDown, layer: l, expert: $0) },
                                sharedGate: shared ? weight(.sharedGate, layer: l) : nil,
                                sharedUp: shared ? weight(.sharedUp, layer: l) : nil,
                                sharedDown: shared ? weight(.sharedDown, layer: l) : nil)
            layer.forward(x: x, y: y, w: w, int8: model.moeInt8(layer: l), pool: model.pool)
        } else if config.activation == "swiglu" {
            project(.mlpGate, layer: l, x: x, y: s.gate.pointer, rows: n)
            project(.mlpUp, layer: l, x: x, y: s.up.pointer, rows: n)
            SwiGLU.forward(gate: s.gate.pointer, up: s.up.pointer, h: s.hidden.pointer, count: n * ffn)
            project(.mlpDown, layer: l, x: s.hidden.pointer, y: y, rows: n)
        } else {
            project(.mlpUp, layer: l, x: x, y: s.up.pointer, rows: n)
            GELU.forward(x: s.up.pointer, y: s.hidden.pointer, count: n * ffn)
            project(.mlpDown, layer: l, x: s.hidden.pointer, y: y, rows: n)
        }
    }

    /// The MoE layer's routing and expert buffers for `rows` rows (kept for batch sizes up to 64,
    /// the decode batches that recur every step; a prompt's are made for its step).
    private func moeLayer(rows: Int, _ moe: ModelConfig.MoEConfig) -> MixtureOfExperts {
        if let layer = moeLayers[rows] { return layer }
        let layer = MixtureOfExperts(rows: rows, channels: config.hiddenSize, intermediate: config.ffnSize,
                                     experts: moe.numExperts, topK: moe.topK, sharedExperts: moe.numSharedExperts)
        if rows <= 64 { moeLayers[rows] = layer }
        return layer
    }

    /// Activations of one step, for up to `rows` rows of `sequences` sequences (grown as needed).
    private struct Scratch {
        let rows: Int, sequences: Int
        let x, ln, q, k, v, att, branch, mid, gate, up, hidden, mean, rstd, last, lastNorm, logits: FloatBuffer

        init(rows n: Int, sequences m: Int, config: ModelConfig?) {
            rows = n
            sequences = m
            let c = config?.hiddenSize ?? 0, qDim = (config?.numAttentionHeads ?? 0) * (config?.headSize ?? 0)
            let kvDim = (config?.kvHeads ?? 0) * (config?.headSize ?? 0)
            let ffn = config?.moeConfig == nil ? (config?.ffnSize ?? 0) : 0, v = config?.vocabSize ?? 0
            x = FloatBuffer(count: n * c); ln = FloatBuffer(count: n * c)
            q = FloatBuffer(count: n * qDim); k = FloatBuffer(count: n * kvDim); self.v = FloatBuffer(count: n * kvDim)
            att = FloatBuffer(count: n * qDim); branch = FloatBuffer(count: n * c); mid = FloatBuffer(count: n * c)
            gate = FloatBuffer(count: n * ffn); up = FloatBuffer(count: n * ffn); hidden = FloatBuffer(count: n * ffn)
            mean = FloatBuffer(count: max(n, m)); rstd = FloatBuffer(count: max(n, m))
            last = FloatBuffer(count: m * c); lastNorm = FloatBuffer(count: m * c); logits = FloatBuffer(count: m * v)
        }
    }
}
