import Checkpoint
import Foundation
import Model
import Tensor
import Testing
import ZeroTrainTestKit

/// The PyTorch + transformers reference cases (Tests/Fixtures/reference, see its README).
@Suite struct ReferenceParityTests {
    /// A case's batch.safetensors: tokens [B, T+1] as inputs tokens[:, :T] and targets tokens[:, 1:].
    static func batch(_ dir: URL) throws -> (inputs: [Int32], targets: [Int32], batch: Int, seqLen: Int) {
        let file = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("batch.safetensors"))
        let tokens = try file.int32s("tokens")
        let shape = file.entry("tokens")!.shape
        let (b, t) = (shape[0], shape[1] - 1)
        var inputs: [Int32] = [], targets: [Int32] = []
        for i in 0..<b {
            inputs += tokens[(i * (t + 1))..<(i * (t + 1) + t)]
            targets += tokens[(i * (t + 1) + 1)..<((i + 1) * (t + 1))]
        }
        return (inputs, targets, b, t)
    }

    /// ‖got − ref‖ / ‖ref‖.
    static func relativeL2(_ got: [Float], _ ref: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (x, y) in zip(got, ref) { num += Double((x - y) * (x - y)); den += Double(y * y) }
        return (num / max(den, 1e-30)).squareRoot()
    }

    @Test(arguments: ["dense", "dense_gqa_tied", "moe", "sliding_window"])
    func logitsLossAndGradientsMatchPyTorch(_ name: String) throws {
        let dir = Fixtures.reference(name)
        let model = try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 2))
        let expected = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("expected.safetensors"))
        let (inputs, targets, b, t) = try Self.batch(dir)
        let loss = try model.forward(inputs: inputs, targets: targets, batch: b, seqLen: t)
        let refLogits = try expected.floats("logits")
        var maxErr: Float = 0
        for (x, y) in zip(model.logits, refLogits) { maxErr = max(maxErr, abs(x - y)) }
        #expect(maxErr <= 1e-4, "logits max abs error \(maxErr)")
        let refLoss = try expected.floats("loss")[0]
        #expect(abs(loss - refLoss) / abs(refLoss) <= 1e-5, "loss \(loss) vs \(refLoss)")
        if model.config.isMoE {
            let refAux = try expected.floats("aux_loss")[0]
            #expect(abs(model.lastAuxLoss - refAux) / abs(refAux) <= 1e-5, "aux \(model.lastAuxLoss) vs \(refAux)")
        }
        try model.backward()
        for e in model.table.entries {
            let ref = try expected.floats("grad." + e.name)
            let got = Array(model.gradients.slice(e.offset, e.count))
            let rel = Self.relativeL2(got, ref)
            #expect(rel <= 1e-4, "gradient of \(e.name): relative L2 error \(rel)")
        }
    }
}
