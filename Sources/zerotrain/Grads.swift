import ArgumentParser
import Checkpoint
import Foundation
import Model
import Tensor
import Training

struct Grads: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write loss, logits, aux_loss and every parameter's gradient for one batch (parity checks).",
        discussion: "Output keys: loss [1], logits [B, T, V], aux_loss [1] (MoE), grad.<tensor name> — the layout of the reference expected.safetensors.")

    @Option(name: .long, help: "Hugging Face model directory (config.json + model.safetensors).")
    var model: String

    @Option(name: .long, help: "safetensors file with int32 tokens [B, T+1].")
    var batch: String

    @Option(name: .long, help: "Output safetensors file.")
    var out: String

    @Option(name: .long, help: "Compute threads.")
    var threads: Int = 1

    @Option(name: .long, help: "Precision of the matrix products: fp32, bf16, fp16 or fp8 (mixed precision, fp32 results; no loss scaling).")
    var precision: String = "fp32"

    @Option(name: .long, help: "GEMM library: onednn or openblas.")
    var gemm: String = "onednn"

    func validate() throws {
        guard Precision(rawValue: precision)?.trains == true else { throw ValidationError("--precision must be \(Precision.trainingNames), got \"\(precision)\"") }
        guard GEMMBackend(rawValue: gemm) != nil else { throw ValidationError("--gemm must be onednn or openblas, got \"\(gemm)\"") }
    }

    func run() throws {
        try runReportingErrors {
            GEMM.setThreads(threads)
            GEMM.backend = GEMMBackend(rawValue: gemm)!
            let m = try CheckpointStore.importHuggingFace(URL(fileURLWithPath: model), pool: ThreadPool(threads: threads),
                                                          precision: Precision(rawValue: precision)!)
            let file = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: batch))
            guard let e = file.entry("tokens"), e.shape.count == 2, e.shape[1] >= 2 else {
                throw TrainingError(.badInput, "\(batch): expected int32 tokens [B, T+1] with T ≥ 1")
            }
            let tokens = try file.int32s("tokens")
            let (b, t) = (e.shape[0], e.shape[1] - 1)
            var inputs: [Int32] = [], targets: [Int32] = []
            for i in 0..<b {
                inputs += tokens[(i * (t + 1))..<(i * (t + 1) + t)]
                targets += tokens[(i * (t + 1) + 1)..<((i + 1) * (t + 1))]
            }
            let loss = try m.forward(inputs: inputs, targets: targets, batch: b, seqLen: t)
            try m.backward()
            var writer = SafeTensorsWriter()
            writer.add("loss", shape: [1], floats: [loss])
            writer.add("logits", shape: [b, t, m.config.vocabSize], floats: m.logits)
            if m.config.isMoE { writer.add("aux_loss", shape: [1], floats: [m.lastAuxLoss]) }
            ModelWeights.add(m.gradients, table: m.table, to: &writer, prefix: "grad.")
            try writer.write(to: URL(fileURLWithPath: out))
            Console.out("loss \(loss)" + (m.config.isMoE ? " aux_loss \(m.lastAuxLoss)" : "") + " → \(out)")
        }
    }
}
