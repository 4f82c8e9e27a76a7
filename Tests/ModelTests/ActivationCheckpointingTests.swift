import Model
import Tensor
import Testing

/// Activation recomputation changes memory, not numbers: every_layer and every_k give the loss,
/// aux loss and every gradient of a run without it, bit for bit, for the architecture options
/// (tied LayerNorm/GELU, GQA + sliding window, MoE with shared experts and aux loss, dropout,
/// bf16), and hold fewer activation bytes.
@Suite struct ActivationCheckpointingTests {
    static func config(_ edit: (inout ModelConfig) -> Void) -> ModelConfig {
        TransformerGradientTests.tiny {
            $0.numLayers = 5
            edit(&$0)
        }
    }

    static let cases: [(String, ModelConfig)] = TransformerGradientTests.cases.map { name, original in (name, config { c in
        c.norm = original.norm; c.activation = original.activation; c.tieEmbeddings = original.tieEmbeddings
        c.numAttentionHeads = original.numAttentionHeads; c.numKeyValueHeads = original.numKeyValueHeads
        c.attention = original.attention; c.moeConfig = original.moeConfig; c.dropout = original.dropout
    }) }

    func run(_ config: ModelConfig, _ checkpointing: ActivationCheckpointing, precision: Precision = .fp32)
        throws -> (loss: Float, aux: Float, gradients: [Float], bytes: Int) {
        let model = try Transformer(config: config, pool: ThreadPool(threads: 2), precision: precision, checkpointing: checkpointing)
        model.initializeParameters(seed: 5)
        let inputs: [Int32] = [1, 5, 2, 9, 3, 3, 0, 10, 4, 7], targets: [Int32] = [5, 2, 9, 3, 3, 0, 10, 4, 7, 1]
        let dropout = config.dropout > 0 ? Transformer.DropoutContext(seed: 1, stream: 2) : nil
        // Two micro-batches, so the second backward accumulates onto the first.
        var loss: Float = 0
        for _ in 0..<2 {
            loss = try model.forward(inputs: inputs, targets: targets, batch: 2, seqLen: 5, dropout: dropout)
            try model.backward(scale: 0.5)
        }
        return (loss, model.lastAuxLoss, model.gradients.toArray(), model.activationBytes(batch: 2, seqLen: 5))
    }

    @Test(arguments: 0..<4, [Precision.fp32, .bf16])
    func recomputationGivesTheSameBits(_ index: Int, precision: Precision) throws {
        let (name, config) = Self.cases[index]
        let reference = try run(config, .none, precision: precision)
        for mode in [ActivationCheckpointing.everyLayer, .everyK(2), .everyK(5), .everyK(9)] {
            let got = try run(config, mode, precision: precision)
            #expect(got.loss.bitPattern == reference.loss.bitPattern, "\(name) \(mode) \(precision): loss")
            #expect(got.aux.bitPattern == reference.aux.bitPattern, "\(name) \(mode) \(precision): aux loss")
            #expect(got.gradients.map(\.bitPattern) == reference.gradients.map(\.bitPattern), "\(name) \(mode) \(precision): gradients")
            if mode == .everyLayer { #expect(got.bytes < reference.bytes, "\(name): every_layer holds \(got.bytes) ≥ \(reference.bytes) bytes") }
        }
    }

    @Test func slotsAndGroups() {
        #expect(ActivationCheckpointing.none.groups(layers: 4) == [0..<4])
        #expect(ActivationCheckpointing.everyLayer.groups(layers: 3) == [0..<1, 1..<2, 2..<3])
        #expect(ActivationCheckpointing.everyK(2).groups(layers: 5) == [0..<2, 2..<4, 4..<5])
        #expect(ActivationCheckpointing.everyK(9).slots(layers: 5) == 5)
    }
}
