import Common
import Foundation
import Model
import Testing
import ZeroTrainTestKit
import Training

@Suite struct ConfigTests {
    @Test func specExampleIsAcceptedVerbatim() throws {
        let c = try TrainConfig.parse(text: """
            model:
              type: "transformer"
              num_layers: 12
              hidden_size: 768
              num_attention_heads: 12
              moe_config:
                num_experts: 16
                top_k: 2
            """)
        #expect(c.model.numLayers == 12 && c.model.hiddenSize == 768 && c.model.numAttentionHeads == 12)
        #expect(c.model.moeConfig == .init(numExperts: 16, topK: 2))
        #expect(c.model.kvHeads == 12 && c.model.headSize == 64 && c.model.ffnSize == 2048)
        #expect(c.training.optim.lr == 3e-4 && c.data.source == "builtin")
    }

    @Test func shippedConfigsLoad() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 5)
        for f in files { _ = try TrainConfig.load(path: dir.appendingPathComponent(f).path) }
    }

    static let invalid: [(String, String)] = [
        ("model: {num_layers: 2, hidden_size: 30, num_attention_heads: 4}",
         "model.hidden_size: must be divisible by num_attention_heads (4), got 30"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 16, top_k: 20}}",
         "model.moe_config.top_k: must be ≤ num_experts (16), got 20"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, attention: {type: sliding_window, window: 0}}",
         "model.attention.window: must be ≥ 1, got 0"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 4, topk: 2}}",
         "model.moe_config.top_k: is required"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 4, top_k: 2, topk: 2}}",
         "model.moe_config.topk: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {learning_rate: 0.1}",
         "training.learning_rate: unknown key"),
        ("model: {num_layers: twelve, hidden_size: 32, num_attention_heads: 4}",
         "model.num_layers: expected an integer, got \"twelve\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {lr: fast}",
         "training.lr: expected a number, got \"fast\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 3}",
         "model.num_key_value_heads: must be ≥ 1 and divide num_attention_heads (4), got 3"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {warmup_steps: 50, total_steps: 10}",
         "training.warmup_steps: must be in 0…total_steps (10), got 50"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, max_seq_len: 64}\ndata: {seq_len: 128}",
         "data.seq_len: must be ≤ model.max_seq_len (64), got 128"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ndata: {source: csv}",
         "data.source: must be builtin, text, jsonl or tokens, got \"csv\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 4}",
         "zero.stage: must be 0, 1, 2 or 3, got 4"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, offload_optimizer: nvme}",
         "zero.offload_optimizer: must be none, host or disk, got nvme"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 2, offload_optimizer: host, offload_params: host}",
         "zero.offload_params: parameters are offloaded only at stage 3 (they are sharded only there), got stage 2"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, offload_optimizer: host, offload_params: disk}",
         "zero.offload_params: disk is further out than offload_optimizer (host); offload the optimizer at least as far"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, prefetch_depth: -1}",
         "zero.prefetch_depth: must be ≥ 0, got -1"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, prefetch: 2}",
         "zero.prefetch: unknown key"),
        ("training: {lr: 0.1}", "model: is required"),
        ("model: [1, 2]", "model: expected a mapping, got a list"),
    ]

    @Test(arguments: 0..<invalid.count)
    func invalidConfigNamesFieldAndRule(_ i: Int) {
        let (yaml, message) = Self.invalid[i]
        #expect { try TrainConfig.parse(text: yaml) } throws: { ($0 as? ConfigError)?.message == message }
    }

    @Test func malformedYAMLIsOneLine() {
        #expect { try TrainConfig.parse(text: "model: {num_layers: 2\n  hidden: [", source: "bad.yaml") } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.message.hasPrefix("bad.yaml: invalid YAML:") && !e.message.contains("\n")
        }
    }

    @Test func huggingFaceConfigsLoad() throws {
        for (name, window, experts) in [("dense", nil, nil), ("sliding_window", 5, nil), ("moe", nil, 4)] as [(String, Int?, Int?)] {
            let c = try TrainConfig.load(path: Fixtures.reference(name).appendingPathComponent("config.json").path)
            #expect(c.model.window == window)
            #expect(c.model.moeConfig?.numExperts == experts)
        }
        let gqa = try TrainConfig.load(path: Fixtures.reference("dense_gqa_tied").appendingPathComponent("config.json").path)
        #expect(gqa.model.kvHeads == 2 && gqa.model.tieEmbeddings && gqa.model.ropeTheta == 500000 && gqa.model.normEps == 1e-6)
    }

    @Test func roundTripsThroughHuggingFaceJSON() throws {
        let c = try TrainConfig.load(path: Fixtures.reference("moe").appendingPathComponent("config.json").path)
        let back = try ModelConfig(huggingFaceJSON: c.model.huggingFaceJSON())
        #expect(back.numLayers == c.model.numLayers && back.moeConfig == c.model.moeConfig && back.kvHeads == c.model.kvHeads)
    }
}
