import Model
import Tensor
import Testing

/// Whole-model gradients against finite differences for the architecture options the reference
/// cases do not cover (LayerNorm, GELU, shared experts, Kaiming init, dropout with a fixed mask).
@Suite struct TransformerGradientTests {
    static func tiny(_ edit: (inout ModelConfig) -> Void) -> ModelConfig {
        var c = ModelConfig.defaults
        c.numLayers = 2
        c.hiddenSize = 8
        c.numAttentionHeads = 2
        c.vocabSize = 11
        c.intermediateSize = 12
        c.maxSeqLen = 8
        // RMSNorm/LayerNorm are scale-invariant, so their Jacobian grows like 1/|x|: embeddings of
        // unit scale keep the finite differences (step 1e-2) in the linear regime.
        c.initialization.embeddingStd = 1
        edit(&c)
        return c
    }

    static let cases: [(String, ModelConfig)] = [
        ("layernorm+gelu+tied", tiny { $0.norm = "layernorm"; $0.activation = "gelu"; $0.tieEmbeddings = true }),
        ("gqa+window+kaiming", tiny { $0.numAttentionHeads = 4; $0.numKeyValueHeads = 2; $0.attention = .init(type: "sliding_window", window: 2); $0.initialization.method = "kaiming_uniform" }),
        ("moe+shared+aux", tiny { $0.moeConfig = .init(numExperts: 3, topK: 2, auxLossCoef: 0.5, numSharedExperts: 1) }),
        ("dropout", tiny { $0.dropout = 0.2 }),
    ]

    @Test(arguments: 0..<4)
    func modelGradientMatchesFiniteDifferences(_ index: Int) throws {
        let (name, config) = Self.cases[index]
        let model = try Transformer(config: config, pool: ThreadPool(threads: 1))
        model.initializeParameters(seed: 5)
        let inputs: [Int32] = [1, 5, 2, 9, 3, 3, 0, 10, 4, 7], targets: [Int32] = [5, 2, 9, 3, 3, 0, 10, 4, 7, 1]
        let dropout = config.dropout > 0 ? Transformer.DropoutContext(seed: 1, stream: 2) : nil
        let coef = Double(config.moeConfig?.auxLossCoef ?? 0)
        try model.forward(inputs: inputs, targets: targets, batch: 2, seqLen: 5, dropout: dropout)
        try model.backward()
        let analytic = model.gradients.toArray()
        let params = model.parameters.buffer
        // One random direction per check keeps the test quick: d/dε L(θ + ε·u) = ∇L·u.
        let u = randomBuffer(params.count, seed: 99)
        Kernels.scale(u.pointer, by: Float(1 / Kernels.sumOfSquares(u.pointer, count: u.count).squareRoot()), count: u.count)
        var expected = 0.0
        for i in 0..<params.count { expected += Double(analytic[i]) * Double(u.pointer[i]) }
        let eps: Float = 1e-3
        func loss(_ s: Float) throws -> Double {
            let saved = model.parameters.toArray()
            Kernels.axpy(s, u.pointer, into: model.parameters.pointer, count: params.count)
            let l = try model.forward(inputs: inputs, targets: targets, batch: 2, seqLen: 5, dropout: dropout)
            let total = Double(l) + coef * Double(model.lastAuxLoss)
            _ = saved.withUnsafeBufferPointer { model.parameters.buffer.update(fromContentsOf: $0) }
            return total
        }
        let numeric = (try loss(1e-2) - loss(-1e-2)) / 2e-2
        #expect(abs(numeric - expected) <= 2e-2 * abs(expected) + 1e-4, "\(name): directional derivative \(expected) vs finite difference \(numeric)")
        // And per tensor for a few coordinates, so a wrong tensor cannot hide in the sum.
        for e in model.table.entries {
            let i = e.offset + e.count / 2
            let saved = params[i]
            params[i] = saved + eps
            let lp = try model.forward(inputs: inputs, targets: targets, batch: 2, seqLen: 5, dropout: dropout)
            let ap = model.lastAuxLoss
            params[i] = saved - eps
            let lm = try model.forward(inputs: inputs, targets: targets, batch: 2, seqLen: 5, dropout: dropout)
            let am = model.lastAuxLoss
            params[i] = saved
            let fd = (Double(lp) - Double(lm) + coef * (Double(ap) - Double(am))) / Double(2 * eps)
            #expect(abs(fd - Double(analytic[i])) <= 3e-2 * abs(fd) + 2e-3, "\(name): \(e.name)[\(e.count / 2)] analytic \(analytic[i]) vs finite difference \(fd)")
        }
    }
}
