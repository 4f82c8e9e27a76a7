import Checkpoint
import Foundation
import Model
import Tensor
import Testing
import ZeroTrainTestKit

/// bf16 mixed precision against PyTorch's float32 results, with `torch.autocast("cpu", bfloat16)`'s
/// own error as the yardstick (Tests/Fixtures/reference/{dense,moe}_bf16, see the README there):
/// each gradient's relative L2 error ≤ 2× PyTorch's for that tensor, the loss's relative error
/// ≤ 1e-3, the logits' max abs error ≤ 3× PyTorch's. Run on both GEMM backends (oneDNN's bf16
/// matmul; OpenBLAS on bf16 inputs widened to fp32).
@Suite(.serialized) struct MixedPrecisionParityTests {
    struct Yardstick: Decodable {
        let grad_rel_err_of_pytorch_autocast: [String: Double]
        let logits_max_abs_err_of_pytorch_autocast: Double
    }

    @Test(arguments: ["dense_bf16", "moe_bf16"], GEMMBackend.allCases)
    func bf16IsWithinPyTorchAutocastError(_ name: String, backend: GEMMBackend) throws {
        let saved = GEMM.backend
        GEMM.backend = backend
        defer { GEMM.backend = saved }
        let dir = Fixtures.reference(name)
        let model = try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 2), precision: .bf16)
        let expected = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("expected.safetensors"))
        let yardstick = try JSONDecoder().decode(Yardstick.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        let (inputs, targets, b, t) = try ReferenceParityTests.batch(dir)
        let loss = try model.forward(inputs: inputs, targets: targets, batch: b, seqLen: t)
        var maxErr: Float = 0
        for (x, y) in zip(model.logits, try expected.floats("logits")) { maxErr = max(maxErr, abs(x - y)) }
        let logitsBound = 3 * yardstick.logits_max_abs_err_of_pytorch_autocast
        #expect(Double(maxErr) <= logitsBound, "\(name) on \(backend): logits max abs error \(maxErr) > \(logitsBound)")
        let refLoss = try expected.floats("loss")[0]
        #expect(abs(loss - refLoss) / abs(refLoss) <= 1e-3, "\(name) on \(backend): loss \(loss) vs \(refLoss)")
        // The bf16 path must actually round: an fp32 run would be far inside the bounds.
        #expect(maxErr > 1e-4, "\(name) on \(backend): logits equal fp32's (max abs error \(maxErr)); bf16 not in use")
        try model.backward()
        for e in model.table.entries {
            let ref = try expected.floats("grad." + e.name)
            let got = Array(model.gradients.slice(e.offset, e.count))
            let rel = ReferenceParityTests.relativeL2(got, ref)
            let pytorch = try #require(yardstick.grad_rel_err_of_pytorch_autocast[e.name], "no yardstick for \(e.name)")
            #expect(rel <= 2 * pytorch, "\(name) on \(backend): gradient of \(e.name): relative L2 error \(rel) > 2 × PyTorch's \(pytorch)")
        }
    }
}
