/// Matrix-multiply FLOPs of one training micro-batch (forward + backward), attention included.
///
/// A linear layer over `rows` rows costs 2·rows·in·out forward and twice that backward (input
/// and weight gradients). Attention costs 4·d FLOPs per (query, key) pair forward (scores and
/// weighted values) and 8·d backward, counting only the pairs computed (the causal triangle,
/// or the window). MoE experts are counted for the tokens actually routed (rows · top_k).
public enum ModelFLOPs {
    public static func trainingStep(config: ModelConfig, batch: Int, seqLen: Int) -> Double {
        let n = Double(batch * seqLen), c = Double(config.hiddenSize)
        let qDim = Double(config.numAttentionHeads * config.headSize), kvDim = Double(config.kvHeads * config.headSize)
        let i = Double(config.ffnSize), v = Double(config.vocabSize)
        func linear(_ rows: Double, _ inF: Double, _ outF: Double) -> Double { 6 * rows * inF * outF }
        var perLayer = linear(n, c, qDim) + 2 * linear(n, c, kvDim) + linear(n, qDim, c)
        let span = Attention.span(seqLen: seqLen, window: config.window)
        var pairs = 0
        for t in 0..<seqLen { pairs += min(t + 1, span) }
        perLayer += 12 * Double(config.headSize) * Double(pairs) * Double(batch * config.numAttentionHeads)
        if let moe = config.moeConfig {
            let routed = n * Double(moe.topK)
            perLayer += linear(n, c, Double(moe.numExperts)) + 3 * linear(routed, c, i)
            if moe.numSharedExperts > 0 { perLayer += 3 * linear(n, c, i * Double(moe.numSharedExperts)) }
        } else {
            perLayer += (config.activation == "swiglu" ? 3 : 2) * linear(n, c, i)
        }
        return Double(config.numLayers) * perLayer + linear(n, c, v)
    }
}
