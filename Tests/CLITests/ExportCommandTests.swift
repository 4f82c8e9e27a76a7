import Checkpoint
import Foundation
import Model
import Tensor
import Testing
import Training
import ZeroTrainTestKit

/// `zerotrain export` as a real process: a trained checkpoint to sharded safetensors + index,
/// a Hugging Face folder re-exported as bf16, and bad arguments.
@Suite(.serialized) struct ExportCommandTests {
    static let models: [String: String] = [
        "dense": "{num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}",
        "window": "{num_layers: 2, hidden_size: 32, num_attention_heads: 4, max_seq_len: 32, attention: {type: sliding_window, window: 5}}",
        "moe": "{num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32, intermediate_size: 48, moe_config: {num_experts: 4, top_k: 2}}",
    ]

    /// Trains `steps` steps of `model` (a key of `models`) into ROOT/ck; returns the checkpoint directory.
    static func train(_ model: String, in root: URL, steps: Int = 3) throws -> URL {
        let ck = root.appendingPathComponent("ck-\(model)")
        let config = root.appendingPathComponent("\(model).yaml")
        try CLI.write("""
            model: \(models[model]!)
            training: {lr: 0.01, warmup_steps: 1, total_steps: \(steps), micro_batch_size: 2, threads: 1, checkpoint_dir: "\(ck.path)", log_interval: 1}
            data: {seq_len: 16}
            """, to: config)
        let r = try CLI.run(["train", "--config", config.path])
        try #require(r.status == 0, "train: \(r.stderr)")
        return ck
    }

    struct Tensor: Equatable { let dtype: String; let shape: [Int]; let bytes: Int }

    /// A safetensors file's tensors (name → dtype, shape, bytes) and its header length.
    static func header(_ url: URL) throws -> (tensors: [String: Tensor], length: Int) {
        let data = try Data(contentsOf: url)
        let n = Int(data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        var out: [String: Tensor] = [:]
        for (k, v) in json where k != "__metadata__" {
            let o = v as! [String: Any], offsets = o["data_offsets"] as! [Int]
            out[k] = Tensor(dtype: o["dtype"] as! String, shape: o["shape"] as! [Int], bytes: offsets[1] - offsets[0])
        }
        return (out, n)
    }

    static func json(_ url: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    /// The tensors a checkpoint holds (name → F32 shape and bytes), from its manifest.
    static func checkpointTensors(_ ck: URL) throws -> [String: Tensor] {
        let manifest = try CheckpointReader<TrainConfig>(ck).manifest
        return Dictionary(uniqueKeysWithValues: manifest.tensors.map {
            ($0.name, Tensor(dtype: "F32", shape: $0.shape, bytes: 4 * $0.shape.reduce(1, *)))
        })
    }

    static let batch = CLI.fixtures.appendingPathComponent("reference/dense/batch.safetensors")

    @Test func exportsATrainedCheckpointInShards() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ck = try Self.train("dense", in: root)
        let out = root.appendingPathComponent("hf")
        let r = try CLI.run(["export", "--checkpoint", ck.path, "--out", out.path, "--max-shard-size", "20KB"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("model.safetensors.index.json") && r.stdout.contains("MB/s"), "\(r.stdout)")

        // The checkpoint's tensors are the reference: same tensors, same shapes.
        let reference = try Self.checkpointTensors(ck)
        let index = try Self.json(out.appendingPathComponent("model.safetensors.index.json"))
        let weightMap = index["weight_map"] as! [String: String]
        #expect(Set(weightMap.keys) == Set(reference.keys))
        let files = Set(weightMap.values).sorted()
        #expect(files.count >= 3)
        #expect(files.first == "model-00001-of-\(String(format: "%05d", files.count)).safetensors")
        var all: [String: Tensor] = [:]
        for f in files {
            let h = try Self.header(out.appendingPathComponent(f))
            #expect(h.length % 8 == 0)
            #expect(Set(h.tensors.keys) == Set(weightMap.filter { $0.value == f }.keys))
            #expect(h.tensors.values.reduce(0) { $0 + $1.bytes } <= 20_000 || h.tensors.count == 1)
            all.merge(h.tensors) { a, _ in a }
        }
        #expect(all == reference)
        #expect((index["metadata"] as! [String: Any])["total_size"] as? Int == reference.values.reduce(0) { $0 + $1.bytes })
        let config = try Self.json(out.appendingPathComponent("config.json"))
        #expect(config["model_type"] as? String == "llama" && config["torch_dtype"] as? String == "float32")

        // The exported weights are the checkpoint's, bit for bit.
        let table = ParameterTable(config: try CheckpointReader<TrainConfig>(ck).manifest.config.model)
        let saved = try CheckpointStore.parameters(of: ck, table: table)
        let exported = FloatBuffer(count: table.count)
        try HuggingFaceFolder(out).read(table: table, elements: 0..<table.count, into: exported.pointer)
        #expect(exported.toArray() == saved.toArray())
        // The sharded folder loads (`grads --model`) and computes exactly what a single-file export does.
        let single = root.appendingPathComponent("hf1")
        #expect(try CLI.run(["export", "--checkpoint", ck.path, "--out", single.path]).status == 0)
        let a = root.appendingPathComponent("a.safetensors"), b = root.appendingPathComponent("b.safetensors")
        let ga = try CLI.run(["grads", "--model", out.path, "--batch", Self.batch.path, "--out", a.path])
        let gb = try CLI.run(["grads", "--model", single.path, "--batch", Self.batch.path, "--out", b.path])
        #expect(ga.status == 0 && gb.status == 0, "\(ga.stderr) \(gb.stderr)")
        #expect(try Data(contentsOf: a) == Data(contentsOf: b))
    }

    @Test func reexportsAHuggingFaceFolderAsBF16() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ck = try Self.train("moe", in: root)
        let sharded = root.appendingPathComponent("sharded"), single = root.appendingPathComponent("bf16")
        let r1 = try CLI.run(["export", "--checkpoint", ck.path, "--out", sharded.path, "--max-shard-size", "30000"])
        #expect(r1.status == 0, "\(r1.stderr)")
        let r2 = try CLI.run(["export", "--checkpoint", sharded.path, "--out", single.path, "--dtype", "bf16"])
        #expect(r2.status == 0, "\(r2.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: single.path).sorted() == ["config.json", "model.safetensors"])
        let reference = try Self.checkpointTensors(ck)
        let h = try Self.header(single.appendingPathComponent("model.safetensors")).tensors
        #expect(Set(h.keys) == Set(reference.keys))
        #expect(h.allSatisfy { $0.value.dtype == "BF16" && $0.value.shape == reference[$0.key]!.shape && $0.value.bytes == reference[$0.key]!.bytes / 2 })
        let config = try Self.json(single.appendingPathComponent("config.json"))
        #expect(config["model_type"] as? String == "mixtral" && config["torch_dtype"] as? String == "bfloat16")
        let g = try CLI.run(["grads", "--model", single.path, "--batch", Self.batch.path, "--out", root.appendingPathComponent("g.safetensors").path])
        #expect(g.status == 0 && g.stdout.hasPrefix("loss "), "\(g.stderr)")
    }

    func expectExit2(_ args: [String], mentions text: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 2, "exit \(r.status) for \(args): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "expected one line, got: \(r.stderr)")
        #expect(r.stderr.hasPrefix("zerotrain: error: ") && r.stderr.contains(text), "stderr: \(r.stderr)")
    }

    @Test func badArgumentsAreOneLineAndExit2() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ref = CLI.fixtures.appendingPathComponent("reference/dense").path
        let out = root.appendingPathComponent("out").path
        try expectExit2(["export", "--checkpoint", ref, "--out", out, "--dtype", "f16"], mentions: "--dtype must be f32 or bf16")
        try expectExit2(["export", "--checkpoint", ref, "--out", out, "--max-shard-size", "5XB"], mentions: "--max-shard-size")
        try expectExit2(["export", "--checkpoint", ref, "--out", out, "--max-shard-size", "0"], mentions: "--max-shard-size")
        try expectExit2(["export", "--checkpoint", root.appendingPathComponent("nothing").path, "--out", out], mentions: "is not a checkpoint")
        try expectExit2(["export", "--checkpoint", ref, "--out", ref], mentions: "--out must differ")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
