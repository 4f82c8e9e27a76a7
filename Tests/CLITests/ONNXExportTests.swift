import Checkpoint
import Foundation
import Model
import Tensor
import Testing
import Training
import ZeroTrainTestKit

extension Python {
    static let hasONNXRuntime: Bool = {
        let ok = run(["-c", "import onnx, onnxruntime, numpy"]).status == 0
        if !ok { print("note: ONNXExportTests skipped: \(interpreter) cannot import onnx, onnxruntime and numpy (set ZEROTRAIN_PYTHON)") }
        return ok
    }()
}

/// `zerotrain export --format onnx` against onnxruntime: onnx.checker accepts the model and
/// onnxruntime's logits equal ZeroTrain's (`zerotrain grads`) within 1e-4, for a full forward and,
/// where the model has the KV cache, for a prefix followed by single tokens fed their past
/// (scripts/check_onnx_export.py). Runs where Python has onnx and onnxruntime.
@Suite(.serialized) struct ONNXExportTests {
    @Test(.enabled(if: Python.hasONNXRuntime, "needs Python with onnx and onnxruntime: set ZEROTRAIN_PYTHON"),
          arguments: [("dense", ["--kv-cache"]), ("moe", ["--kv-cache"]), ("window", ["--kv-cache", "--external-data"]),
                      ("dense", ["--no-kv-cache"]), ("moe", ["--no-kv-cache", "--external-data"])])
    func onnxruntimeGivesZeroTrainsLogits(model: String, flags: [String]) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ck = try ExportCommandTests.train(model, in: root)
        let hf = root.appendingPathComponent("hf"), onnx = root.appendingPathComponent("onnx")
        let e = try CLI.run(["export", "--checkpoint", ck.path, "--out", hf.path])
        try #require(e.status == 0, "export: \(e.stderr)")
        let logits = root.appendingPathComponent("zt.safetensors")
        let g = try CLI.run(["grads", "--model", hf.path, "--batch", ExportCommandTests.batch.path, "--out", logits.path])
        try #require(g.status == 0, "grads: \(g.stderr)")
        let o = try CLI.run(["export", "--format", "onnx", "--checkpoint", ck.path, "--out", onnx.path] + flags)
        try #require(o.status == 0, "export --format onnx: \(o.stderr)")
        let external = FileManager.default.fileExists(atPath: onnx.appendingPathComponent("model.onnx.data").path)
        #expect(external == flags.contains("--external-data"))
        let check = Python.run(["scripts/check_onnx_export.py", onnx.appendingPathComponent("model.onnx").path,
                                ExportCommandTests.batch.path, logits.path])
        print("\(model) \(flags.joined(separator: " ")):\n\(check.output)")
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("KV cache") == flags.contains("--kv-cache"))
    }

    /// LayerNorm, exact GELU and a tied head (GPT-style), compared with ZeroTrain's forward in process.
    @Test(.enabled(if: Python.hasONNXRuntime, "needs Python with onnx and onnxruntime: set ZEROTRAIN_PYTHON"))
    func layerNormGELUTiedModel() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ck = root.appendingPathComponent("ck"), config = root.appendingPathComponent("gpt.yaml")
        try CLI.write("""
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, max_seq_len: 32, norm: layernorm, activation: gelu, tie_embeddings: true}
            training: {lr: 0.01, warmup_steps: 1, total_steps: 3, micro_batch_size: 2, threads: 1, checkpoint_dir: "\(ck.path)", log_interval: 1}
            data: {seq_len: 16}
            """, to: config)
        let t = try CLI.run(["train", "--config", config.path])
        try #require(t.status == 0, "train: \(t.stderr)")
        // ZeroTrain's logits of the batch's inputs, in process.
        let reader = try CheckpointReader<TrainConfig>(ck)
        let model = try Transformer(config: reader.manifest.config.model, pool: ThreadPool(threads: 1))
        try reader.read(.parameters, elements: 0..<model.table.count, into: model.parameters.pointer)
        let tokens = try SafeTensorsFile(contentsOf: ExportCommandTests.batch).int32s("tokens")
        let (b, width) = (2, tokens.count / 2)
        let inputs = (0..<b).flatMap { tokens[($0 * width)..<($0 * width + width - 1)] }
        try model.forward(inputs: Array(inputs), targets: nil, batch: b, seqLen: width - 1)
        var writer = SafeTensorsWriter()
        writer.add("logits", shape: [b, width - 1, model.config.vocabSize], floats: Array(model.logits))
        let logits = root.appendingPathComponent("zt.safetensors")
        try writer.write(to: logits)
        let onnx = root.appendingPathComponent("onnx")
        let o = try CLI.run(["export", "--format", "onnx", "--checkpoint", ck.path, "--out", onnx.path])
        try #require(o.status == 0, "export --format onnx: \(o.stderr)")
        let check = Python.run(["scripts/check_onnx_export.py", onnx.appendingPathComponent("model.onnx").path,
                                ExportCommandTests.batch.path, logits.path])
        print("gpt (layernorm, gelu, tied):\n\(check.output)")
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("LayerNormalization") && check.output.contains("Erf"))
    }

    @Test func rejectsAnUnknownFormat() throws {
        let r = try CLI.run(["export", "--format", "tflite", "--checkpoint", "/nonexistent", "--out", "/tmp/x"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--format must be hf or onnx"), "\(r.stderr)")
    }
}
