import Common
import Foundation

/// The `model:` section of a config file. Every field but num_layers, hidden_size and
/// num_attention_heads has a default (the property initialisers), so the spec's five-line example
/// is a complete config. The YAML keys are in `fields`.
public struct ModelConfig: ConfigSection, Equatable {
    /// Architecture family; only "transformer" (decoder-only, Llama/DeepSeek style).
    public var type = "transformer"
    /// Number of decoder blocks (required in a config file).
    public var numLayers = 2
    /// Width of the residual stream (C) (required in a config file).
    public var hiddenSize = 64
    /// Query heads per block (required in a config file).
    public var numAttentionHeads = 4
    /// Key/value heads (grouped-query attention); must divide num_attention_heads. Default: num_attention_heads.
    public var numKeyValueHeads: Int?
    /// Width of one head; default hidden_size / num_attention_heads.
    public var headDim: Int?
    /// Token vocabulary size; the byte-level tokenizer needs 256.
    public var vocabSize = 256
    /// Hidden width of the MLP (of each expert with MoE). Default: 8·hidden/3 rounded up to 64 for swiglu, 4·hidden for gelu.
    public var intermediateSize: Int?
    /// Longest sequence the model accepts (RoPE table size).
    public var maxSeqLen = 1024
    /// "rmsnorm" or "layernorm".
    public var norm = "rmsnorm"
    /// Epsilon inside the norm's square root.
    public var normEps = 1e-5
    /// RoPE base frequency θ.
    public var ropeTheta: Double = 10000
    /// MLP type: "swiglu" (gate/up/down, SiLU) or "gelu" (up/down, exact GELU).
    public var activation = "swiglu"
    /// Share the embedding matrix with the LM head.
    public var tieEmbeddings = false
    /// Dropout probability on each block's attention and MLP outputs while training.
    public var dropout: Double = 0
    /// Attention pattern.
    public var attention = AttentionConfig()
    /// Mixture-of-Experts; absent for a dense model.
    public var moeConfig: MoEConfig?
    /// Parameter initialisation.
    public var initialization = InitConfig()

    public static let fields: [ConfigField<Self>] = [
        .init("type", \.type),
        .required("num_layers", \.numLayers), .required("hidden_size", \.hiddenSize),
        .required("num_attention_heads", \.numAttentionHeads),
        .init("num_key_value_heads", \.numKeyValueHeads), .init("head_dim", \.headDim), .init("vocab_size", \.vocabSize),
        .init("intermediate_size", \.intermediateSize), .init("max_seq_len", \.maxSeqLen), .init("norm", \.norm),
        .init("norm_eps", \.normEps), .init("rope_theta", \.ropeTheta), .init("activation", \.activation),
        .init("tie_embeddings", \.tieEmbeddings), .init("dropout", \.dropout), .init("attention", \.attention),
        .init("moe_config", \.moeConfig), .init("init", \.initialization),
    ]

    public struct AttentionConfig: ConfigSection, Equatable {
        /// "full" (causal) or "sliding_window".
        public var type = "full"
        /// Positions attended to, including the query's own (sliding_window only): i attends to i−W+1 … i.
        public var window: Int?

        public init() {}

        /// The defaults, with the given values instead (nil keeps the default).
        public init(type: String? = nil, window: Int? = nil) {
            if let type { self.type = type }
            if let window { self.window = window }
        }

        public static let fields: [ConfigField<Self>] = [.init("type", \.type), .init("window", \.window)]
    }

    public struct MoEConfig: ConfigSection, Equatable {
        /// Routed experts per MoE layer (required in a config file).
        public var numExperts = 8
        /// Experts each token is sent to (required in a config file).
        public var topK = 2
        /// Coefficient of the Switch load-balancing loss added to the training loss.
        public var auxLossCoef = 0.01
        /// Shared experts (DeepSeekMoE) every token passes through, fused into one MLP of
        /// intermediate_size × num_shared_experts.
        public var numSharedExperts = 0

        public init() {}

        /// The defaults, with the given values instead (nil keeps the default).
        public init(numExperts: Int, topK: Int, auxLossCoef: Double? = nil, numSharedExperts: Int? = nil) {
            self.numExperts = numExperts
            self.topK = topK
            if let auxLossCoef { self.auxLossCoef = auxLossCoef }
            if let numSharedExperts { self.numSharedExperts = numSharedExperts }
        }

        public static let fields: [ConfigField<Self>] = [
            .required("num_experts", \.numExperts), .required("top_k", \.topK),
            .init("aux_loss_coef", \.auxLossCoef), .init("num_shared_experts", \.numSharedExperts),
        ]
    }

    public struct InitConfig: ConfigSection, Equatable {
        /// Linear weights: "xavier_uniform" or "kaiming_uniform". Biases start at 0, norm weights at 1.
        public var method = "xavier_uniform"
        /// Standard deviation of the normal(0, std) embedding initialisation.
        public var embeddingStd = 0.02
        /// Seed of the initialisation; default: training.seed.
        public var seed: UInt64?

        public init() {}

        /// The defaults, with the given values instead (nil keeps the default).
        public init(method: String? = nil, embeddingStd: Double? = nil, seed: UInt64? = nil) {
            if let method { self.method = method }
            if let embeddingStd { self.embeddingStd = embeddingStd }
            if let seed { self.seed = seed }
        }

        public static let fields: [ConfigField<Self>] = [
            .init("method", \.method), .init("embedding_std", \.embeddingStd), .init("seed", \.seed),
        ]
    }

    /// Every field at its default (`init()`).
    public static let defaults = ModelConfig()

    public init() {}

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
