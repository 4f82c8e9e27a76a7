import Checkpoint
import Data
import Foundation
import Serve
import Tensor
import Testing
import Training
import ZeroTrainTestKit

/// A model records its tokenizer (issue 14 §5): a run whose data names a tokenizer.json copies it
/// into every checkpoint (listed in the manifest with its CRC); `generate` encodes the prompt and
/// decodes the continuation with it; `export` copies it into the Hugging Face folder with a
/// tokenizer_config.json. A run that names none keeps the byte-level tokenizer and records nothing.
@Suite(.serialized) struct TokenizerRecordTests {
    @Test func checkpointsAndExportsCarryTheTokenizer() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let corpus = root.appendingPathComponent("corpus.txt"), tok = root.appendingPathComponent("tok.json")
        try CLI.write(String(repeating: "the cat sat on the mat. the dog sat on the log. ", count: 100), to: corpus)
        let t = try CLI.run(["data", "tokenizer", "train", corpus.path, "--vocab-size", "300", "-o", tok.path])
        try #require(t.status == 0, "tokenizer train: \(t.stderr)")
        let ck = root.appendingPathComponent("ck"), config = root.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: 1, hidden_size: 32, num_attention_heads: 4, vocab_size: 300, max_seq_len: 64}
            training: {lr: 0.01, warmup_steps: 1, total_steps: 40, micro_batch_size: 4, threads: 1, checkpoint_dir: "\(ck.path)"}
            data: {source: text, path: "\(corpus.path)", tokenizer: "\(tok.path)", seq_len: 16}
            """, to: config)
        let r = try CLI.run(["train", "--config", config.path])
        try #require(r.status == 0, "train: \(r.stderr)")

        let reader = try CheckpointReader<TrainConfig>(ck)
        #expect(reader.manifest.files.contains { $0.name == "tokenizer.json" })
        #expect(try Data(contentsOf: reader.folder.appendingPathComponent("tokenizer.json")) == Data(contentsOf: tok))
        let v = try CLI.run(["checkpoint", "verify", ck.path])
        #expect(v.status == 0, "\(v.stderr)")

        // generate uses the recorded tokenizer: its output is the engine's with the BPE.
        let prompt = "the dog"
        let served = try ServedModel.load(ck, pool: ThreadPool(threads: 1))
        guard case .bpe = served.tokenizer else { Issue.record("the checkpoint's tokenizer was not loaded"); return }
        let g = try InferenceEngine(model: served.transformer).generate(
            [GenerationRequest(prompt: served.tokenizer.encode(prompt), maxTokens: 12)], tokenizer: served.tokenizer)[0]
        #expect(g.tokens.contains { $0 >= 256 })   // merged tokens, which the byte-level tokenizer cannot decode
        let out = try CLI.run(["generate", "--checkpoint", ck.path, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "12"])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout == prompt + g.text + "\n")

        let hf = root.appendingPathComponent("hf")
        let e = try CLI.run(["export", "--checkpoint", ck.path, "--out", hf.path])
        try #require(e.status == 0, "export: \(e.stderr)")
        #expect(try Data(contentsOf: hf.appendingPathComponent("tokenizer.json")) == Data(contentsOf: tok))
        let tc = try JSONSerialization.jsonObject(with: Data(contentsOf: hf.appendingPathComponent("tokenizer_config.json"))) as! [String: Any]
        #expect(tc["eos_token"] as? String == "<|eos|>" && tc["chat_template"] as? String == ChatTemplate.jinja)
        let fromExport = try CLI.run(["generate", "--checkpoint", hf.path, "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "12"])
        #expect(fromExport.stdout == out.stdout)

        // No tokenizer named: nothing recorded, the byte-level tokenizer.
        let plain = try ExportCommandTests.train("dense", in: root, steps: 1)
        let folder = try CheckpointStore.resolve(plain)
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path))
        guard case .bytes = try ServedModel.load(plain, pool: ThreadPool(threads: 1)).tokenizer else {
            Issue.record("a checkpoint without tokenizer.json must use the byte-level tokenizer"); return
        }
    }

    @Test func aTokenizerLargerThanTheVocabularyIsRejected() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let corpus = root.appendingPathComponent("corpus.txt"), tok = root.appendingPathComponent("tok.json")
        try CLI.write(String(repeating: "the cat sat on the mat. the dog sat on the log. ", count: 50), to: corpus)
        try #require(try CLI.run(["data", "tokenizer", "train", corpus.path, "--vocab-size", "300", "-o", tok.path]).status == 0)
        let config = root.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: 1, hidden_size: 16, num_attention_heads: 2, vocab_size: 260, max_seq_len: 16}
            data: {source: text, path: "\(corpus.path)", tokenizer: "\(tok.path)", seq_len: 8}
            """, to: config)
        let r = try CLI.run(["train", "--config", config.path])
        #expect(r.status == 2 && r.stderr.contains("model.vocab_size: must be ≥ the vocabulary of data.tokenizer"), "\(r.stderr)")
    }
}
