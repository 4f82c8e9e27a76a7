import Foundation

/// Reading and writing Hugging Face `config.json` files (model_type llama, mistral, mixtral).
extension ModelConfig {
    /// A model config from a Hugging Face `config.json`.
    public init(huggingFaceJSON data: Data, path: String = "config.json") throws {
        func fail(_ field: String, _ rule: String) -> ModelError { ModelError(.invalidConfig, "\(path): \(field): \(rule)") }
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelError(.invalidConfig, "\(path): not a JSON object")
        }
        func int(_ key: String) throws -> Int? {
            guard let v = obj[key], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded() else {
                throw fail(key, "must be an integer, got \(v)")
            }
            return n.intValue
        }
        func double(_ key: String, in o: [String: Any]? = nil) throws -> Double? {
            guard let v = (o ?? obj)[key], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber else { throw fail(key, "must be a number, got \(v)") }
            return n.doubleValue
        }
        func required(_ key: String) throws -> Int {
            guard let v = try int(key) else { throw fail(key, "is required") }
            return v
        }
        let modelType = obj["model_type"] as? String ?? ""
        guard ["llama", "mistral", "mixtral"].contains(modelType) else {
            throw fail("model_type", "must be llama, mistral or mixtral, got \"\(modelType)\"")
        }
        if let act = obj["hidden_act"] as? String, act != "silu" {
            throw fail("hidden_act", "only silu is supported, got \"\(act)\"")
        }
        for key in ["attention_bias", "mlp_bias"] where (obj[key] as? Bool) == true {
            throw fail(key, "biases are not supported")
        }
        var theta = try double("rope_theta") ?? 10000
        if let rp = obj["rope_parameters"] as? [String: Any] {
            if let t = try double("rope_theta", in: rp) { theta = t }
            if let kind = rp["rope_type"] as? String, kind != "default" {
                throw fail("rope_parameters.rope_type", "only \"default\" is supported, got \"\(kind)\"")
            }
        }
        if let scaling = obj["rope_scaling"], !(scaling is NSNull) {
            throw fail("rope_scaling", "is not supported")
        }
        var attention = AttentionConfig()
        if let w = try int("sliding_window") {
            attention = AttentionConfig(type: "sliding_window", window: w)
        }
        var moe: MoEConfig?
        if modelType == "mixtral" {
            moe = MoEConfig(numExperts: try required("num_local_experts"), topK: try required("num_experts_per_tok"),
                            auxLossCoef: try double("router_aux_loss_coef") ?? 0.001)
        }
        self.init(
            type: "transformer", numLayers: try required("num_hidden_layers"), hiddenSize: try required("hidden_size"),
            numAttentionHeads: try required("num_attention_heads"), numKeyValueHeads: try int("num_key_value_heads"),
            headDim: try int("head_dim"), vocabSize: try required("vocab_size"), intermediateSize: try required("intermediate_size"),
            maxSeqLen: try int("max_position_embeddings") ?? 2048, norm: "rmsnorm", normEps: try double("rms_norm_eps") ?? 1e-6,
            ropeTheta: theta, activation: "swiglu", tieEmbeddings: (obj["tie_word_embeddings"] as? Bool) ?? false,
            dropout: 0, attention: attention, moeConfig: moe, initialization: InitConfig())
        try validate(path: path)
    }

    /// Whether Hugging Face transformers can load this architecture (llama/mistral/mixtral).
    public var isHuggingFaceCompatible: Bool {
        norm == "rmsnorm" && activation == "swiglu" && (moeConfig?.numSharedExperts ?? 0) == 0
    }

    /// The Hugging Face `config.json` for this model (meaningful when `isHuggingFaceCompatible`);
    /// `torchDType` is the weights' type as transformers names it ("float32", "bfloat16"), written
    /// as `torch_dtype` (transformers 4) and `dtype` (its name since transformers 4.56).
    public func huggingFaceJSON(torchDType: String = "float32") -> Data {
        let modelType = isMoE ? "mixtral" : (window != nil ? "mistral" : "llama")
        let arch = ["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM"][modelType]!
        var o: [String: Any] = [
            "architectures": [arch], "model_type": modelType, "vocab_size": vocabSize, "hidden_size": hiddenSize,
            "intermediate_size": ffnSize, "num_hidden_layers": numLayers, "num_attention_heads": numAttentionHeads,
            "num_key_value_heads": kvHeads, "head_dim": headSize, "hidden_act": "silu",
            "max_position_embeddings": maxSeqLen, "rms_norm_eps": normEps, "rope_theta": ropeTheta,
            "tie_word_embeddings": tieEmbeddings, "attention_dropout": 0.0, "torch_dtype": torchDType, "dtype": torchDType,
        ]
        if modelType == "llama" { o["attention_bias"] = false; o["mlp_bias"] = false }
        if modelType != "llama" { o["sliding_window"] = window.map { $0 as Any } ?? NSNull() }
        if let moe = moeConfig {
            o["num_local_experts"] = moe.numExperts
            o["num_experts_per_tok"] = moe.topK
            o["router_aux_loss_coef"] = moe.auxLossCoef
        }
        return (try? JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }
}
