import Foundation
import ZeroTrainTestKit
import Testing

/// Every bad input gives one clear line on stderr and exit code 2 — never a crash or a hang.
@Suite struct BadInputTests {
    func expectExit2(_ args: [String], mentions text: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 2, "exit \(r.status) for \(args): \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(r.stderr)")
        #expect(r.stderr.hasPrefix("zerotrain: error: ") && r.stderr.contains(text), "stderr: \(r.stderr)")
    }

    @Test func malformedYAML() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = dir.appendingPathComponent("bad.yaml")
        try CLI.write("model: {num_layers: 2\n  hidden: [\n", to: f)
        try expectExit2(["train", "--config", f.path], mentions: "invalid YAML")
    }

    @Test func invalidValue() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = dir.appendingPathComponent("c.yaml")
        try CLI.write("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 16, top_k: 20}}\n", to: f)
        try expectExit2(["train", "--config", f.path], mentions: "model.moe_config.top_k: must be ≤ num_experts (16), got 20")
    }

    @Test(arguments: [("precision: fp4", "training.precision: must be fp32, bf16, fp16 or fp8, got \"fp4\""),
                      ("precision: fp16, loss_scale: 0", "training.loss_scale: must be a positive finite number, got 0.0"),
                      ("precision: fp16, loss_scale: -65536", "training.loss_scale: must be a positive finite number, got -65536.0"),
                      ("precision: fp16, loss_scale_growth_interval: 0", "training.loss_scale_growth_interval: must be ≥ 1, got 0"),
                      ("precision: fp8, fp8_amax_history: 0", "training.fp8_amax_history: must be ≥ 1, got 0")])
    func badPrecisionSettings(setting: String, message: String) throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = dir.appendingPathComponent("c.yaml")
        try CLI.write("model: {num_layers: 1, hidden_size: 16, num_attention_heads: 2}\ntraining: {\(setting), total_steps: 1}\n", to: f)
        try expectExit2(["train", "--config", f.path], mentions: message)
    }

    /// `bench quantize --decode N` (KV-cached decode latency): the prompt and N tokens must fit the model.
    @Test func benchQuantizeDecodeBeyondTheContext() throws {
        try expectExit2(["bench", "quantize", "--config", "configs/tiny.yaml", "--decode", "100000"], mentions: "must fit model.max_seq_len")
        try expectExit2(["bench", "quantize", "--config", "configs/tiny.yaml", "--decode=-1"], mentions: "--decode must be ≥ 0")
    }

    /// `--stop-after-step` pauses after an update: 0 or less names no update.
    @Test func stopAfterStepBelowOne() throws {
        try expectExit2(["coordinator", "--config", "configs/tiny.yaml", "--run-dir", "/nonexistent/run", "--stop-after-step", "0"],
                        mentions: "--stop-after-step must be ≥ 1, got 0")
    }

    @Test func missingConfigFile() throws {
        try expectExit2(["train", "--config", "/nonexistent/config.yaml"], mentions: "cannot read the config file")
    }

    @Test func emptyDataFile() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("empty.txt")
        try CLI.write("", to: data)
        try expectExit2(["train", "--config", "configs/tiny.yaml", "--data", data.path, "--checkpoint-dir", dir.appendingPathComponent("ck").path],
                        mentions: "is empty")
    }

    @Test func missingSafetensors() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: CLI.fixtures.appendingPathComponent("reference/dense/config.json"),
                                         to: dir.appendingPathComponent("config.json"))
        try expectExit2(["grads", "--model", dir.path, "--batch", CLI.fixtures.appendingPathComponent("reference/dense/batch.safetensors").path,
                         "--out", dir.appendingPathComponent("out.safetensors").path], mentions: "model.safetensors")
    }

    @Test func truncatedSafetensors() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ref = CLI.fixtures.appendingPathComponent("reference/dense")
        try FileManager.default.copyItem(at: ref.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        let weights = try Data(contentsOf: ref.appendingPathComponent("model.safetensors"))
        try weights.prefix(weights.count / 2).write(to: dir.appendingPathComponent("model.safetensors"))
        try expectExit2(["grads", "--model", dir.path, "--batch", ref.appendingPathComponent("batch.safetensors").path,
                         "--out", dir.appendingPathComponent("out.safetensors").path], mentions: "truncated")
    }

    @Test func wrongShapesInWeights() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // The dense config with hidden 48: the weights file (hidden 32) no longer fits.
        let ref = CLI.fixtures.appendingPathComponent("reference/dense")
        let config = try String(contentsOf: ref.appendingPathComponent("config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"hidden_size\": 32", with: "\"hidden_size\": 48")
            .replacingOccurrences(of: "\"head_dim\": 8", with: "\"head_dim\": 12")
        try CLI.write(config, to: dir.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: ref.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        try expectExit2(["grads", "--model", dir.path, "--batch", ref.appendingPathComponent("batch.safetensors").path,
                         "--out", dir.appendingPathComponent("out.safetensors").path], mentions: "has shape [64, 32], expected [64, 48]")
    }

    @Test func resumeFromSomethingThatIsNotACheckpoint() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try expectExit2(["train", "--config", "configs/tiny.yaml", "--resume", dir.path], mentions: "is not a checkpoint")
    }

    /// Not bad input: a checkpoint whose weights file exists but cannot be read (a directory in
    /// its place) is an I/O failure, exit code 1, still one line naming the file.
    @Test func unreadableCheckpointIsARuntimeFailure() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: 1, hidden_size: 16, num_attention_heads: 2, max_seq_len: 16}
            training: {total_steps: 1, micro_batch_size: 1, checkpoint_dir: "\(dir.appendingPathComponent("ck").path)"}
            data: {seq_len: 8}
            """, to: config)
        let trained = try CLI.run(["train", "--config", config.path])
        try #require(trained.status == 0, "\(trained.stderr)")
        let weights = dir.appendingPathComponent("ck/step-00000001/shard-00000-of-00001.safetensors")
        try FileManager.default.removeItem(at: weights)
        try FileManager.default.createDirectory(at: weights, withIntermediateDirectories: false)
        for args in [["generate", "--checkpoint", dir.appendingPathComponent("ck").path, "--prompt", "a"],
                     ["train", "--config", config.path, "--resume", dir.appendingPathComponent("ck").path]] {
            let r = try CLI.run(args)
            #expect(r.status == 1, "exit \(r.status) for \(args): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("zerotrain: error: cannot read ")
                    && r.stderr.contains("shard-00000-of-00001.safetensors"), "stderr: \(r.stderr)")
        }
    }
}
