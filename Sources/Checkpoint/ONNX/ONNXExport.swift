import Foundation
import Model

/// The forward pass of a ZeroTrain Transformer (dense, MoE, sliding window; GQA; RMSNorm or
/// LayerNorm; SwiGLU or GELU) as an ONNX graph of standard opset-17 operators, laid out as
/// transformers' ONNX exports (optimum) are:
///
/// * inputs `input_ids` (int64, [batch_size, sequence_length]) and, with the KV cache,
///   `past_key_values.{l}.key` / `.value` (float, [batch_size, kv_heads, past_sequence_length, head_dim];
///   past_sequence_length may be 0 for the first call);
/// * outputs `logits` (float, [batch_size, sequence_length, vocab]) and, with the KV cache,
///   `present.{l}.key` / `.value` (float, [batch_size, kv_heads, past_sequence_length + sequence_length, head_dim]),
///   the keys after the rotary embedding, as transformers caches them.
///
/// Positions continue after the past (past_sequence_length + 0 …); there is no padding mask (every
/// sequence of a batch has the same length). Weights are initializers under their Hugging Face
/// names, [out, in] as stored, multiplied by `Gemm` with transB = 1. An MoE layer computes every
/// expert densely (batched `MatMul` over experts stacked as `…experts.{w1,w3,w2}.stacked`, stored
/// [E, in, out]) and weights their outputs by the router's renormalised top-k probabilities
/// (`TopK`, `ScatterElements`), zero for unselected experts: the same sum ZeroTrain forms,
/// without data-dependent shapes.
public enum ONNXExport {
    /// The graph of `config`, with its weights filled by `read` (one tensor at a time, when written).
    public static func model(config: ModelConfig, table: ParameterTable, kvCache: Bool,
                             read: @escaping (ParameterEntry, UnsafeMutablePointer<Float>) throws -> Void) -> ONNXModel {
        var b = Builder(config: config, table: table, read: read)
        b.build(kvCache: kvCache)
        return b.m
    }

    struct Builder {
        let config: ModelConfig
        let table: ParameterTable
        let read: (ParameterEntry, UnsafeMutablePointer<Float>) throws -> Void
        var m = ONNXModel()

        init(config: ModelConfig, table: ParameterTable, read: @escaping (ParameterEntry, UnsafeMutablePointer<Float>) throws -> Void) {
            self.config = config
            self.table = table
            self.read = read
        }

        /// The initializer of a parameter tensor (added on first use), by its Hugging Face name.
        mutating func weight(_ kind: TensorKind, _ layer: Int = -1) -> String {
            let e = table.entry(kind, layer: layer)!
            if !m.initializers.contains(where: { $0.name == e.name }) {
                let read = self.read
                m.initializer(e.name, dims: e.shape, .weight(count: e.count) { try read(e, $0) })
            }
            return e.name
        }

        /// x (N, in) → (N, out) = x · Wᵀ.
        mutating func linear(_ x: String, _ kind: TensorKind, _ layer: Int = -1) -> String {
            m.op("Gemm", [x, weight(kind, layer)], [.int("transB", 1)])
        }

        /// x (N, C) → the norm of `site` ("input", "post", "final").
        mutating func norm(_ x: String, weight w: TensorKind, bias: TensorKind, layer: Int = -1) -> String {
            let eps = Float(config.normEps)
            if config.norm == "layernorm" {
                return m.op("LayerNormalization", [x, weight(w, layer), weight(bias, layer)], [.int("axis", -1), .float("epsilon", eps)])
            }
            let meanSquare = m.op("ReduceMean", [m.op("Mul", [x, x])], [.ints("axes", [-1]), .int("keepdims", 1)])
            let rstd = m.op("Reciprocal", [m.op("Sqrt", [m.op("Add", [meanSquare, m.float(eps)])])])
            return m.op("Mul", [weight(w, layer), m.op("Mul", [x, rstd])])
        }

        /// rows (B·S, n·d) → (B, S, n, d); `idsShape` is (B, S).
        mutating func heads(_ rows: String, _ n: Int, _ idsShape: String) -> String {
            let shape = m.op("Concat", [idsShape, m.ints([n, config.headSize])], [.int("axis", 0)])
            return m.op("Reshape", [rows, shape])
        }

        mutating func silu(_ x: String) -> String { m.op("Mul", [x, m.op("Sigmoid", [x])]) }

        /// Exact (erf) GELU.
        mutating func gelu(_ x: String) -> String {
            let erf = m.op("Erf", [m.op("Mul", [x, m.float(0.70710678118654752)])])
            return m.op("Mul", [m.op("Mul", [x, m.float(0.5)]), m.op("Add", [erf, m.float(1)])])
        }

        /// x (B, S, heads, d) rotated by the positions' cos/sin (S, 1, d), rotate-half convention.
        mutating func rotate(_ x: String, cos: String, sin: String) -> String {
            let half = config.headSize / 2
            let x1 = m.op("Slice", [x, m.ints([0]), m.ints([half]), m.ints([3])])
            let x2 = m.op("Slice", [x, m.ints([half]), m.ints([2 * half]), m.ints([3])])
            let rotated = m.op("Concat", [m.op("Neg", [x2]), x1], [.int("axis", 3)])
            return m.op("Add", [m.op("Mul", [x, cos]), m.op("Mul", [rotated, sin])])
        }

        mutating func build(kvCache: Bool) {
            let c = config.hiddenSize, d = config.headSize, h = config.numAttentionHeads, hkv = config.kvHeads
            let v = config.vocabSize, L = config.numLayers
            m.graphName = "zerotrain_transformer"
            m.inputs = [.init(name: "input_ids", type: .int64, shape: [.named("batch_size"), .named("sequence_length")])]
            m.outputs = [.init(name: "logits", type: .float, shape: [.named("batch_size"), .named("sequence_length"), .fixed(v)])]
            if kvCache {
                for l in 0..<L {
                    for part in ["key", "value"] {
                        m.inputs.append(.init(name: "past_key_values.\(l).\(part)", type: .float,
                                              shape: [.named("batch_size"), .fixed(hkv), .named("past_sequence_length"), .fixed(d)]))
                        m.outputs.append(.init(name: "present.\(l).\(part)", type: .float,
                                               shape: [.named("batch_size"), .fixed(hkv), .named("total_sequence_length"), .fixed(d)]))
                    }
                }
            }
            // Shapes and positions.
            let idsShape = m.op("Shape", ["input_ids"])
            let seq = m.op("Gather", [idsShape, m.ints([1], scalar: true)], [.int("axis", 0)])
            let past = kvCache
                ? m.op("Gather", [m.op("Shape", ["past_key_values.0.key"]), m.ints([2], scalar: true)], [.int("axis", 0)])
                : m.ints([0], scalar: true)
            let total = m.op("Add", [past, seq])
            let positions = m.op("Range", [past, total, m.ints([1], scalar: true)])
            let keyPositions = m.op("Range", [m.ints([0], scalar: true), total, m.ints([1], scalar: true)])
            // mask (S, T): key j visible from query position t when j ≤ t (and j > t − W with a window).
            let queryColumn = m.op("Unsqueeze", [positions, m.ints([1])])
            let keyRow = m.op("Unsqueeze", [keyPositions, m.ints([0])])
            var mask = m.op("LessOrEqual", [keyRow, queryColumn])
            if let w = config.window {
                let lowest = m.op("Sub", [queryColumn, m.ints([w], scalar: true)])
                mask = m.op("And", [mask, m.op("Greater", [keyRow, lowest])])
            }
            // Rotary tables (max_seq_len, 1, d), cos and sin of each pair repeated in both halves.
            let rope = RotaryEmbedding(headDim: d, maxPositions: config.maxSeqLen, theta: config.ropeTheta)
            let (cosTable, sinTable) = rope.fullTables()
            m.initializer("rotary.cos", dims: [config.maxSeqLen, 1, d], .floats(cosTable))
            m.initializer("rotary.sin", dims: [config.maxSeqLen, 1, d], .floats(sinTable))
            let cos = m.op("Gather", ["rotary.cos", positions], [.int("axis", 0)])
            let sin = m.op("Gather", ["rotary.sin", positions], [.int("axis", 0)])
            let negInf = m.float(-.infinity)
            let scale = m.float(1 / Float(d).squareRoot())

            // Embedding → rows (N = B·S, C).
            let embedded = m.op("Gather", [weight(.embedding), "input_ids"], [.int("axis", 0)])
            var x = m.op("Reshape", [embedded, m.ints([-1, c])])
            for l in 0..<L {
                let ln1 = norm(x, weight: .inputNormWeight, bias: .inputNormBias, layer: l)
                let qRows = linear(ln1, .qProj, l), kRows = linear(ln1, .kProj, l), vRows = linear(ln1, .vProj, l)
                let q = rotate(heads(qRows, h, idsShape), cos: cos, sin: sin)
                let k = rotate(heads(kRows, hkv, idsShape), cos: cos, sin: sin)
                let vv = heads(vRows, hkv, idsShape)
                let perm: ONNXModel.Attribute = .ints("perm", [0, 2, 1, 3])
                var keys = m.op("Transpose", [k], [perm]), values = m.op("Transpose", [vv], [perm])  // (B, Hkv, S, d)
                if kvCache {
                    keys = m.op("Concat", ["past_key_values.\(l).key", keys], [.int("axis", 2)], name: "present.\(l).key")
                    values = m.op("Concat", ["past_key_values.\(l).value", values], [.int("axis", 2)], name: "present.\(l).value")
                }
                // Grouped queries: (B, H, S, d) → (B, Hkv, H/Hkv, S, d) against keys (B, Hkv, 1, T, d).
                let grouped = m.op("Reshape", [m.op("Transpose", [q], [perm]), m.ints([0, hkv, h / hkv, -1, d])])
                let k5 = m.op("Unsqueeze", [keys, m.ints([2])]), v5 = m.op("Unsqueeze", [values, m.ints([2])])
                let scores = m.op("Mul", [m.op("MatMul", [grouped, m.op("Transpose", [k5], [.ints("perm", [0, 1, 2, 4, 3])])]), scale])
                let probs = m.op("Softmax", [m.op("Where", [mask, scores, negInf])], [.int("axis", -1)])
                let context = m.op("Reshape", [m.op("MatMul", [probs, v5]), m.ints([0, h, -1, d])])  // (B, H, S, d)
                let rows = m.op("Reshape", [m.op("Transpose", [context], [perm]), m.ints([-1, h * d])])
                let mid = m.op("Add", [x, linear(rows, .oProj, l)])
                let ln2 = norm(mid, weight: .postNormWeight, bias: .postNormBias, layer: l)
                x = m.op("Add", [mid, feedForward(ln2, layer: l)])
            }
            let final = norm(x, weight: .finalNormWeight, bias: .finalNormBias)
            let logits = linear(final, config.tieEmbeddings ? .embedding : .lmHead)
            _ = m.op("Reshape", [logits, m.op("Concat", [idsShape, m.ints([v])], [.int("axis", 0)])], name: "logits")
        }

        /// x (N, C) → the block's MLP or MoE output (N, C).
        mutating func feedForward(_ x: String, layer l: Int) -> String {
            guard let moe = config.moeConfig else {
                if config.activation == "swiglu" {
                    return linear(m.op("Mul", [silu(linear(x, .mlpGate, l)), linear(x, .mlpUp, l)]), .mlpDown, l)
                }
                return linear(gelu(linear(x, .mlpUp, l)), .mlpDown, l)
            }
            let e = moe.numExperts
            let probs = m.op("Softmax", [linear(x, .router, l)], [.int("axis", -1)])
            let top = m.node("TopK", [probs, m.ints([moe.topK])], [.int("axis", -1), .int("largest", 1), .int("sorted", 1)], outputs: 2)
            let normalised = m.op("Div", [top[0], m.op("ReduceSum", [top[0], m.ints([-1])], [.int("keepdims", 1)])])
            let zeros = m.op("ConstantOfShape", [m.op("Shape", [probs])], [.floatTensor("value", 0)])
            let combine = m.op("ScatterElements", [zeros, top[1], normalised], [.int("axis", 1)])  // (N, E)
            let perExpert = m.op("Unsqueeze", [m.op("Transpose", [combine], [.ints("perm", [1, 0])]), m.ints([2])])  // (E, N, 1)
            let rows = m.op("Unsqueeze", [x, m.ints([0])])  // (1, N, C)
            let gate = m.op("MatMul", [rows, stackedExperts(.expertGate, l, e)])
            let up = m.op("MatMul", [rows, stackedExperts(.expertUp, l, e)])
            let out = m.op("MatMul", [m.op("Mul", [silu(gate), up]), stackedExperts(.expertDown, l, e)])  // (E, N, C)
            var y = m.op("ReduceSum", [m.op("Mul", [out, perExpert]), m.ints([0])], [.int("keepdims", 0)])
            if moe.numSharedExperts > 0 {
                y = m.op("Add", [y, linear(m.op("Mul", [silu(linear(x, .sharedGate, l)), linear(x, .sharedUp, l)]), .sharedDown, l)])
            }
            return y
        }

        /// The experts' weights of `kind` in layer `l` stacked and transposed: (E, in, out).
        mutating func stackedExperts(_ kind: TensorKind, _ l: Int, _ experts: Int) -> String {
            let entries = (0..<experts).map { table.entry(kind, layer: l, expert: $0)! }
            let rows = entries[0].shape[0], cols = entries[0].shape[1]
            let name = entries[0].name.replacingOccurrences(of: ".experts.0.", with: ".experts.") + ".stacked"
            let read = self.read
            m.initializer(name, dims: [experts, cols, rows], .weight(count: experts * rows * cols) { dst in
                var one = [Float](repeating: 0, count: rows * cols)
                for (e, entry) in entries.enumerated() {
                    try one.withUnsafeMutableBufferPointer { try read(entry, $0.baseAddress!) }
                    let base = dst + e * rows * cols
                    for r in 0..<rows { for c in 0..<cols { base[c * rows + r] = one[r * cols + c] } }
                }
            })
            return name
        }
    }
}
