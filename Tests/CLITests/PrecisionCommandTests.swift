import Foundation
import Testing
import ZeroTrainTestKit

/// `training.precision` and `training.gemm` from the command line: the start-up line naming what
/// runs, the fallbacks on CPUs without AVX512_BF16 (forced with oneDNN's ONEDNN_MAX_CPU_ISA), the
/// bench report's fields and bad values.
@Suite struct PrecisionCommandTests {
    static func config(precision: String, gemm: String = "onednn") -> String {
        """
        model: {num_layers: 2, hidden_size: 64, num_attention_heads: 4, intermediate_size: 128, vocab_size: 256, max_seq_len: 32}
        training: {total_steps: 3, micro_batch_size: 2, threads: 2, precision: \(precision), gemm: \(gemm)}
        data: {seq_len: 32}
        """
    }

    func train(_ config: String, environment: [String: String] = [:]) throws -> CLI.Result {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("c.yaml")
        try CLI.write(config, to: file)
        return try CLI.run(["train", "--config", file.path], environment: environment)
    }

    @Test func bf16SaysHowItRunsOnEveryCPU() throws {
        // This machine first: whatever it has, the line says which path runs, and training completes.
        let here = try train(Self.config(precision: "bf16"))
        #expect(here.status == 0, "\(here.stderr)")
        #expect(here.stdout.contains("gemm onednn") && here.stdout.contains("precision bf16 ("), "\(here.stdout)")
        #expect(here.stdout.contains("step 3/3"))
        // AVX-512 without AVX512_BF16: oneDNN emulates bf16.
        let emulated = try train(Self.config(precision: "bf16"), environment: ["ONEDNN_MAX_CPU_ISA": "AVX512_CORE"])
        #expect(emulated.status == 0, "\(emulated.stderr)")
        #expect(emulated.stdout.contains("isa avx512_core)") && emulated.stdout.contains("precision bf16 (emulated by oneDNN"),
                "\(emulated.stdout)")
        #expect(emulated.stdout.contains("step 3/3"))
        // AVX2: no bf16 matmul in oneDNN; bf16-rounded operands are multiplied in fp32.
        let fallback = try train(Self.config(precision: "bf16"), environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
        #expect(fallback.status == 0, "\(fallback.stderr)")
        #expect(fallback.stdout.contains("isa avx2)") && fallback.stdout.contains("precision bf16 (fp32 fallback"), "\(fallback.stdout)")
        #expect(fallback.stdout.contains("step 3/3"))
        let openblas = try train(Self.config(precision: "fp32", gemm: "openblas"))
        #expect(openblas.status == 0 && openblas.stdout.contains("gemm openblas (kernel"), "\(openblas.stdout)")
    }

    @Test(arguments: [("precision: bf17", "training.precision"), ("gemm: mkl", "training.gemm")])
    func unknownValuesAreConfigErrors(_ bad: String, key: String) throws {
        let text = Self.config(precision: "fp32").replacingOccurrences(of: bad.hasPrefix("precision") ? "precision: fp32" : "gemm: onednn",
                                                                      with: bad)
        let r = try train(text)
        #expect(r.status == 2, "exit \(r.status): \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains(key), "\(r.stderr)")
    }

    @Test func benchTrainReportsEveryPeakAndTheOneInUse() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("c.yaml")
        try CLI.write(Self.config(precision: "fp32"), to: file)
        let r = try CLI.run(["bench", "train", "--config", file.path, "--steps", "1", "--precision", "bf16", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect(json["precision"] as? String == "bf16")
        #expect(json["gemm"] as? String == "onednn")
        #expect((json["isa"] as? String)?.isEmpty == false)
        let peaks = try #require(json["peaks"] as? [String: Double])
        #expect(peaks["onednn_fp32"] ?? 0 > 0 && peaks["openblas_fp32"] ?? 0 > 0)
        let peak = try #require(json["peak_gflops"] as? Double)
        #expect(peak == peaks["onednn_bf16"] ?? peaks["onednn_fp32"], "MFU must use the peak of the format in use")
    }
}
