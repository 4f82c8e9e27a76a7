import Foundation

/// The `model:` section of a config file. Every field has a default (see `defaults`), so the
/// spec's five-line example is a complete config. Field names are the YAML keys.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// Architecture family; only "transformer" (decoder-only, Llama/DeepSeek style).
    public var type: String
    /// Number of decoder blocks.
    public var numLayers: Int
    /// Width of the residual stream (C).
    public var hiddenSize: Int
    /// Query heads per block.
    public var numAttentionHeads: Int
    /// Key/value heads (grouped-query attention); must divide num_attention_heads. Default: num_attention_heads.
    public var numKeyValueHeads: Int?
    /// Width of one head; default hidden_size / num_attention_heads.
    public var headDim: Int?
    /// Token vocabulary size; the byte-level tokenizer needs 256.
    public var vocabSize: Int
    /// Hidden width of the MLP (of each expert with MoE). Default: 8·hidden/3 rounded up to 64 for swiglu, 4·hidden for gelu.
    public var intermediateSize: Int?
    /// Longest sequence the model accepts (RoPE table size).
    public var maxSeqLen: Int
    /// "rmsnorm" or "layernorm".
    public var norm: String
    /// Epsilon inside the norm's square root.
    public var normEps: Double
    /// RoPE base frequency θ.
    public var ropeTheta: Double
    /// MLP type: "swiglu" (gate/up/down, SiLU) or "gelu" (up/down, exact GELU).
    public var activation: String
    /// Share the embedding matrix with the LM head.
    public var tieEmbeddings: Bool
    /// Dropout probability on each block's attention and MLP outputs while training.
    public var dropout: Double
    /// Attention pattern.
    public var attention: AttentionConfig
    /// Mixture-of-Experts; absent for a dense model.
    public var moeConfig: MoEConfig?
    /// Parameter initialisation.
    public var initialization: InitConfig

    public struct AttentionConfig: Codable, Sendable, Equatable {
        /// "full" (causal) or "sliding_window".
        public var type: String
        /// Positions attended to, including the query's own (sliding_window only): i attends to i−W+1 … i.
        public var window: Int?

        public init(type: String = "full", window: Int? = nil) {
            self.type = type
            self.window = window
        }

        enum CodingKeys: String, CodingKey { case type, window }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = try c.decodeIfPresent(String.self, forKey: .type) ?? "full"
            window = try c.decodeIfPresent(Int.self, forKey: .window)
        }
    }

    public struct MoEConfig: Codable, Sendable, Equatable {
        /// Routed experts per MoE layer.
        public var numExperts: Int
        /// Experts each token is sent to.
        public var topK: Int
        /// Coefficient of the Switch load-balancing loss added to the training loss.
        public var auxLossCoef: Double
        /// Shared experts (DeepSeekMoE) every token passes through, fused into one MLP of
        /// intermediate_size × num_shared_experts.
        public var numSharedExperts: Int

        public init(numExperts: Int, topK: Int, auxLossCoef: Double = 0.01, numSharedExperts: Int = 0) {
            self.numExperts = numExperts
            self.topK = topK
            self.auxLossCoef = auxLossCoef
            self.numSharedExperts = numSharedExperts
        }

        enum CodingKeys: String, CodingKey {
            case numExperts = "num_experts", topK = "top_k", auxLossCoef = "aux_loss_coef", numSharedExperts = "num_shared_experts"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            numExperts = try c.decode(Int.self, forKey: .numExperts)
            topK = try c.decode(Int.self, forKey: .topK)
            auxLossCoef = try c.decodeIfPresent(Double.self, forKey: .auxLossCoef) ?? 0.01
            numSharedExperts = try c.decodeIfPresent(Int.self, forKey: .numSharedExperts) ?? 0
        }
    }

    public struct InitConfig: Codable, Sendable, Equatable {
        /// Linear weights: "xavier_uniform" or "kaiming_uniform". Biases start at 0, norm weights at 1.
        public var method: String
        /// Standard deviation of the normal(0, std) embedding initialisation.
        public var embeddingStd: Double
        /// Seed of the initialisation; default: training.seed.
        public var seed: UInt64?

        public init(method: String = "xavier_uniform", embeddingStd: Double = 0.02, seed: UInt64? = nil) {
            self.method = method
            self.embeddingStd = embeddingStd
            self.seed = seed
        }

        enum CodingKeys: String, CodingKey { case method, embeddingStd = "embedding_std", seed }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            method = try c.decodeIfPresent(String.self, forKey: .method) ?? "xavier_uniform"
            embeddingStd = try c.decodeIfPresent(Double.self, forKey: .embeddingStd) ?? 0.02
            seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
        }
    }

    enum CodingKeys: String, CodingKey {
        case type
        case numLayers = "num_layers", hiddenSize = "hidden_size", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", vocabSize = "vocab_size"
        case intermediateSize = "intermediate_size", maxSeqLen = "max_seq_len", norm
        case normEps = "norm_eps", ropeTheta = "rope_theta", activation
        case tieEmbeddings = "tie_embeddings", dropout, attention
        case moeConfig = "moe_config", initialization = "init"
    }

    /// The defaults of every optional field, in one place.
    public static let defaults = ModelConfig(
        type: "transformer", numLayers: 2, hiddenSize: 64, numAttentionHeads: 4, numKeyValueHeads: nil,
        headDim: nil, vocabSize: 256, intermediateSize: nil, maxSeqLen: 1024, norm: "rmsnorm", normEps: 1e-5,
        ropeTheta: 10000, activation: "swiglu", tieEmbeddings: false, dropout: 0, attention: AttentionConfig(),
        moeConfig: nil, initialization: InitConfig())

    public init(type: String, numLayers: Int, hiddenSize: Int, numAttentionHeads: Int, numKeyValueHeads: Int?,
                headDim: Int?, vocabSize: Int, intermediateSize: Int?, maxSeqLen: Int, norm: String, normEps: Double,
                ropeTheta: Double, activation: String, tieEmbeddings: Bool, dropout: Double,
                attention: AttentionConfig, moeConfig: MoEConfig?, initialization: InitConfig) {
        self.type = type
        self.numLayers = numLayers
        self.hiddenSize = hiddenSize
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.intermediateSize = intermediateSize
        self.maxSeqLen = maxSeqLen
        self.norm = norm
        self.normEps = normEps
        self.ropeTheta = ropeTheta
        self.activation = activation
        self.tieEmbeddings = tieEmbeddings
        self.dropout = dropout
        self.attention = attention
        self.moeConfig = moeConfig
        self.initialization = initialization
    }

    public init(from decoder: Decoder) throws {
        let d = ModelConfig.defaults
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(String.self, forKey: .type) ?? d.type
        numLayers = try c.decode(Int.self, forKey: .numLayers)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads)
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize)
        maxSeqLen = try c.decodeIfPresent(Int.self, forKey: .maxSeqLen) ?? d.maxSeqLen
        norm = try c.decodeIfPresent(String.self, forKey: .norm) ?? d.norm
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? d.normEps
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? d.ropeTheta
        activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? d.activation
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieEmbeddings) ?? d.tieEmbeddings
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout) ?? d.dropout
        attention = try c.decodeIfPresent(AttentionConfig.self, forKey: .attention) ?? d.attention
        moeConfig = try c.decodeIfPresent(MoEConfig.self, forKey: .moeConfig)
        initialization = try c.decodeIfPresent(InitConfig.self, forKey: .initialization) ?? d.initialization
    }

    // MARK: derived sizes

    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var headSize: Int { headDim ?? hiddenSize / max(1, numAttentionHeads) }
    public var ffnSize: Int {
        if let i = intermediateSize { return i }
        if activation == "gelu" { return 4 * hiddenSize }
        return (8 * hiddenSize / 3 + 63) / 64 * 64
    }
    /// Attention span per query: the window for sliding-window attention, else nil (full causal).
    public var window: Int? { attention.type == "sliding_window" ? attention.window : nil }
    public var isMoE: Bool { moeConfig != nil }

    /// Checks every rule; the error names the field path (`model.…`) and the rule.
    public func validate(path: String = "model") throws {
        func fail(_ field: String, _ rule: String) -> ModelError { ModelError(.invalidConfig, "\(path).\(field): \(rule)") }
        guard type == "transformer" else { throw fail("type", "must be \"transformer\", got \"\(type)\"") }
        guard numLayers >= 1 else { throw fail("num_layers", "must be ≥ 1, got \(numLayers)") }
        guard hiddenSize >= 1 else { throw fail("hidden_size", "must be ≥ 1, got \(hiddenSize)") }
        guard numAttentionHeads >= 1 else { throw fail("num_attention_heads", "must be ≥ 1, got \(numAttentionHeads)") }
        if headDim == nil && hiddenSize % numAttentionHeads != 0 {
            throw fail("hidden_size", "must be divisible by num_attention_heads (\(numAttentionHeads)), got \(hiddenSize)")
        }
        if let h = headDim, h < 1 { throw fail("head_dim", "must be ≥ 1, got \(h)") }
        guard headSize % 2 == 0 else { throw fail("head_dim", "must be even for rotary embeddings, got \(headSize)") }
        if let kv = numKeyValueHeads {
            guard kv >= 1 && numAttentionHeads % kv == 0 else {
                throw fail("num_key_value_heads", "must be ≥ 1 and divide num_attention_heads (\(numAttentionHeads)), got \(kv)")
            }
        }
        guard vocabSize >= 2 else { throw fail("vocab_size", "must be ≥ 2, got \(vocabSize)") }
        if let i = intermediateSize, i < 1 { throw fail("intermediate_size", "must be ≥ 1, got \(i)") }
        guard maxSeqLen >= 1 else { throw fail("max_seq_len", "must be ≥ 1, got \(maxSeqLen)") }
        guard ["rmsnorm", "layernorm"].contains(norm) else { throw fail("norm", "must be \"rmsnorm\" or \"layernorm\", got \"\(norm)\"") }
        guard normEps > 0 else { throw fail("norm_eps", "must be > 0, got \(normEps)") }
        guard ropeTheta > 0 else { throw fail("rope_theta", "must be > 0, got \(ropeTheta)") }
        guard ["swiglu", "gelu"].contains(activation) else { throw fail("activation", "must be \"swiglu\" or \"gelu\", got \"\(activation)\"") }
        guard dropout >= 0 && dropout < 1 else { throw fail("dropout", "must be in [0, 1), got \(dropout)") }
        switch attention.type {
        case "full":
            if attention.window != nil { throw fail("attention.window", "only valid with type sliding_window") }
        case "sliding_window":
            guard let w = attention.window else { throw fail("attention.window", "is required for type sliding_window") }
            guard w >= 1 else { throw fail("attention.window", "must be ≥ 1, got \(w)") }
        default:
            throw fail("attention.type", "must be \"full\" or \"sliding_window\", got \"\(attention.type)\"")
        }
        if let moe = moeConfig {
            guard moe.numExperts >= 1 else { throw fail("moe_config.num_experts", "must be ≥ 1, got \(moe.numExperts)") }
            guard moe.topK >= 1 else { throw fail("moe_config.top_k", "must be ≥ 1, got \(moe.topK)") }
            guard moe.topK <= moe.numExperts else {
                throw fail("moe_config.top_k", "must be ≤ num_experts (\(moe.numExperts)), got \(moe.topK)")
            }
            guard moe.auxLossCoef >= 0 else { throw fail("moe_config.aux_loss_coef", "must be ≥ 0, got \(moe.auxLossCoef)") }
            guard moe.numSharedExperts >= 0 else { throw fail("moe_config.num_shared_experts", "must be ≥ 0, got \(moe.numSharedExperts)") }
            guard activation == "swiglu" else { throw fail("activation", "MoE experts need \"swiglu\", got \"\(activation)\"") }
        }
        guard ["xavier_uniform", "kaiming_uniform"].contains(initialization.method) else {
            throw fail("init.method", "must be \"xavier_uniform\" or \"kaiming_uniform\", got \"\(initialization.method)\"")
        }
        guard initialization.embeddingStd > 0 else { throw fail("init.embedding_std", "must be > 0, got \(initialization.embeddingStd)") }
    }
}
