import Foundation
import Testing
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

    @Test func rejectsAnUnknownFormat() throws {
        let r = try CLI.run(["export", "--format", "tflite", "--checkpoint", "/nonexistent", "--out", "/tmp/x"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--format must be hf or onnx"), "\(r.stderr)")
    }
}
