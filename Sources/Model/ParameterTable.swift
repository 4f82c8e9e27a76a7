/// The kinds of parameter tensor a model can have. Names follow Hugging Face
/// (Llama / Mistral / Mixtral); `layer` and `expert` fill the placeholders.
public enum TensorKind: String, CaseIterable, Sendable {
    case embedding, inputNormWeight, inputNormBias
    case qProj, kProj, vProj, oProj
    case postNormWeight, postNormBias
    case mlpGate, mlpUp, mlpDown
    case router, expertGate, expertDown, expertUp
    case sharedGate, sharedUp, sharedDown
    case finalNormWeight, finalNormBias, lmHead

    /// The Hugging Face tensor name.
    public func name(layer: Int, expert: Int) -> String {
        let l = "model.layers.\(layer)"
        switch self {
        case .embedding: return "model.embed_tokens.weight"
        case .inputNormWeight: return "\(l).input_layernorm.weight"
        case .inputNormBias: return "\(l).input_layernorm.bias"
        case .qProj: return "\(l).self_attn.q_proj.weight"
        case .kProj: return "\(l).self_attn.k_proj.weight"
        case .vProj: return "\(l).self_attn.v_proj.weight"
        case .oProj: return "\(l).self_attn.o_proj.weight"
        case .postNormWeight: return "\(l).post_attention_layernorm.weight"
        case .postNormBias: return "\(l).post_attention_layernorm.bias"
        case .mlpGate: return "\(l).mlp.gate_proj.weight"
        case .mlpUp: return "\(l).mlp.up_proj.weight"
        case .mlpDown: return "\(l).mlp.down_proj.weight"
        case .router: return "\(l).block_sparse_moe.gate.weight"
        case .expertGate: return "\(l).block_sparse_moe.experts.\(expert).w1.weight"
        case .expertDown: return "\(l).block_sparse_moe.experts.\(expert).w2.weight"
        case .expertUp: return "\(l).block_sparse_moe.experts.\(expert).w3.weight"
        case .sharedGate: return "\(l).block_sparse_moe.shared_experts.gate_proj.weight"
        case .sharedUp: return "\(l).block_sparse_moe.shared_experts.up_proj.weight"
        case .sharedDown: return "\(l).block_sparse_moe.shared_experts.down_proj.weight"
        case .finalNormWeight: return "model.norm.weight"
        case .finalNormBias: return "model.norm.bias"
        case .lmHead: return "lm_head.weight"
        }
    }
}

/// One tensor's place in the flat parameter buffer (and, with the same layout, in the
/// gradient and optimizer-state buffers).
public struct ParameterEntry: Sendable, Hashable {
    public let kind: TensorKind
    /// Block index, or -1 for tensors outside the blocks.
    public let layer: Int
    /// Expert index, or -1.
    public let expert: Int
    /// Hugging Face name.
    public let name: String
    /// Shape as Hugging Face stores it (linear weights are [out, in]).
    public let shape: [Int]
    /// First element in the flat buffer.
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// AdamW weight decay applies to tensors of 2+ dimensions only.
    public var decays: Bool { shape.count >= 2 }
}

/// Every parameter tensor of a model, generated from its config, in the flat-buffer order:
/// embedding, then block by block (attention, then MLP or MoE), then the final norm and LM head.
/// Checkpoints, the optimizer, ZeRO partitioning and the tests all iterate this one table.
public struct ParameterTable: Sendable {
    public let entries: [ParameterEntry]
    /// Total elements (Ψ).
    public let count: Int
    /// The flat buffer cut where the model uses it, in order: the embedding (region 0), block l
    /// (region l + 1), the head — final norm and LM head — (region L + 1). ZeRO stage 3 gathers
    /// and releases parameters region by region; stages 2–3 reduce gradients region by region.
    public let regions: [Range<Int>]
    private let byKey: [Key: Int]
    private let byName: [String: Int]

    private struct Key: Hashable { let kind: TensorKind; let layer: Int; let expert: Int }

    public init(config: ModelConfig) {
        var entries: [ParameterEntry] = []
        var offset = 0
        func add(_ kind: TensorKind, _ shape: [Int], layer: Int = -1, expert: Int = -1) {
            let e = ParameterEntry(kind: kind, layer: layer, expert: expert,
                                   name: kind.name(layer: layer, expert: expert), shape: shape, offset: offset)
            entries.append(e)
            offset += e.count
        }
        let c = config.hiddenSize, v = config.vocabSize, i = config.ffnSize
        let q = config.numAttentionHeads * config.headSize, kv = config.kvHeads * config.headSize
        let layerNorm = config.norm == "layernorm"
        add(.embedding, [v, c])
        for l in 0..<config.numLayers {
            add(.inputNormWeight, [c], layer: l)
            if layerNorm { add(.inputNormBias, [c], layer: l) }
            add(.qProj, [q, c], layer: l)
            add(.kProj, [kv, c], layer: l)
            add(.vProj, [kv, c], layer: l)
            add(.oProj, [c, q], layer: l)
            add(.postNormWeight, [c], layer: l)
            if layerNorm { add(.postNormBias, [c], layer: l) }
            if let moe = config.moeConfig {
                add(.router, [moe.numExperts, c], layer: l)
                for e in 0..<moe.numExperts {
                    add(.expertGate, [i, c], layer: l, expert: e)
                    add(.expertDown, [c, i], layer: l, expert: e)
                    add(.expertUp, [i, c], layer: l, expert: e)
                }
                if moe.numSharedExperts > 0 {
                    let s = i * moe.numSharedExperts
                    add(.sharedGate, [s, c], layer: l)
                    add(.sharedUp, [s, c], layer: l)
                    add(.sharedDown, [c, s], layer: l)
                }
            } else if config.activation == "swiglu" {
                add(.mlpGate, [i, c], layer: l)
                add(.mlpUp, [i, c], layer: l)
                add(.mlpDown, [c, i], layer: l)
            } else {
                add(.mlpUp, [i, c], layer: l)
                add(.mlpDown, [c, i], layer: l)
            }
        }
        add(.finalNormWeight, [c])
        if layerNorm { add(.finalNormBias, [c]) }
        if !config.tieEmbeddings { add(.lmHead, [v, c]) }
        self.entries = entries
        self.count = offset
        // Entries are in region order (embedding, block 0 … L−1, head): cut where the layer changes.
        var regions = [entries[0].offset..<(entries[0].offset + entries[0].count)]
        var start = regions[0].upperBound
        for l in 0..<config.numLayers {
            let end = entries.last { $0.layer == l }.map { $0.offset + $0.count } ?? start
            regions.append(start..<end)
            start = end
        }
        regions.append(start..<offset)
        self.regions = regions
        var byKey: [Key: Int] = [:], byName: [String: Int] = [:]
        for (n, e) in entries.enumerated() {
            byKey[Key(kind: e.kind, layer: e.layer, expert: e.expert)] = n
            byName[e.name] = n
        }
        self.byKey = byKey
        self.byName = byName
    }

    /// The entry of a kind (layer/expert -1 where they don't apply); nil if the model has none.
    public func entry(_ kind: TensorKind, layer: Int = -1, expert: Int = -1) -> ParameterEntry? {
        byKey[Key(kind: kind, layer: layer, expert: expert)].map { entries[$0] }
    }

    public func entry(named name: String) -> ParameterEntry? { byName[name].map { entries[$0] } }

    /// The contiguous range of block `layer`'s tensors in the flat buffer.
    public func layerRange(_ layer: Int) -> Range<Int> {
        layer >= 0 && layer + 2 < regions.count ? regions[layer + 1] : 0..<0
    }

    /// Elements of the largest region: the unit ZeRO stages 2–3 reduce and stage 3 gathers.
    public var largestRegion: Int { regions.map(\.count).max() ?? 0 }

    /// The tensors after the blocks (final norm, LM head), to the end of the buffer.
    public var headRange: Range<Int> { regions[regions.count - 1] }

    /// The embedding matrix.
    public var embeddingRange: Range<Int> { regions[0] }

    /// The region a tensor belongs to (see `regions`).
    @inline(__always) public func region(_ kind: TensorKind, layer: Int, layers: Int) -> Int {
        layer >= 0 ? layer + 1 : kind == .embedding ? 0 : layers + 1
    }

    /// Offset of a tensor that the model is known to have.
    public func offset(_ kind: TensorKind, layer: Int = -1, expert: Int = -1) -> Int {
        guard let e = entry(kind, layer: layer, expert: expert) else {
            preconditionFailure("model has no \(kind) for layer \(layer) expert \(expert)")
        }
        return e.offset
    }
}
