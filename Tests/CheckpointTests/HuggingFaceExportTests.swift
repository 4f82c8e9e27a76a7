import Checkpoint
import Foundation
import Model
import Tensor
import Testing

/// `HuggingFaceExport`: sharded safetensors + index as transformers writes them, and
/// `CheckpointStore.importHuggingFace` / `huggingFaceParameters` reading them back.
@Suite struct HuggingFaceExportTests {
    static let models: [String: String] = [
        "dense": #"{"num_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "vocab_size": 48, "max_seq_len": 16, "intermediate_size": 32}"#,
        "moe": #"{"num_layers": 2, "hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "max_seq_len": 16, "intermediate_size": 24, "moe_config": {"num_experts": 4, "top_k": 2}}"#,
        "window": #"{"num_layers": 2, "hidden_size": 16, "num_attention_heads": 2, "vocab_size": 40, "max_seq_len": 16, "attention": {"type": "sliding_window", "window": 4}}"#,
    ]

    static func config(_ name: String) throws -> ModelConfig { try ModelConfig.decodeForTests(models[name]!) }

    /// Parameters with every bit pattern class a float can have in a model: random magnitudes and signs.
    static func randomParameters(_ table: ParameterTable, seed: UInt64) -> FloatBuffer {
        let p = FloatBuffer(count: table.count)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<table.count {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            let u = Float(s >> 40) / Float(1 << 24)          // [0, 1)
            p.pointer[i] = (u - 0.5) * Float(1 << (Int(s & 7)))  // a few binades
        }
        return p
    }

    struct Header { let length: UInt64; let tensors: [String: (dtype: String, shape: [Int], offsets: [Int])]; let metadata: [String: String] }

    static func header(_ url: URL) throws -> Header {
        let data = try Data(contentsOf: url)
        let n = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + Int(n)))) as! [String: Any]
        var tensors: [String: (dtype: String, shape: [Int], offsets: [Int])] = [:]
        for (k, v) in json where k != "__metadata__" {
            let o = v as! [String: Any]
            tensors[k] = (o["dtype"] as! String, o["shape"] as! [Int], o["data_offsets"] as! [Int])
        }
        return Header(length: n, tensors: tensors, metadata: json["__metadata__"] as? [String: String] ?? [:])
    }

    static func tempDir() -> URL { CheckpointStoreTests.tempDir() }

    static func export(_ params: FloatBuffer, model: ModelConfig, table: ParameterTable, to dir: URL, dtype: ExportDType,
                       maxShardBytes: Int) throws -> [URL] {
        try HuggingFaceExport.write(model: model, table: table, to: dir, dtype: dtype, maxShardBytes: maxShardBytes) { e, dst in
            dst.update(from: params.pointer + e.offset, count: e.count)
        }
    }

    static func bf16(_ x: Float) -> Float { Float(bitPattern: UInt32(floatToBFloat16(x)) << 16) }

    @Test(arguments: ["dense", "moe", "window"], ExportDType.allCases)
    func shardedExportRoundTrips(_ name: String, _ dtype: ExportDType) throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try Self.config(name)
        let table = ParameterTable(config: model)
        let params = Self.randomParameters(table, seed: 7)
        let size = dtype == .f32 ? 4 : 2
        let total = table.count * size
        let limit = total / 5
        let files = try Self.export(params, model: model, table: table, to: dir, dtype: dtype, maxShardBytes: limit)

        let shards = files.filter { $0.pathExtension == "safetensors" }
        #expect(shards.count >= 3, "\(shards.count) shard files for \(total) bytes with a \(limit)-byte limit")
        #expect(shards.map(\.lastPathComponent) == HuggingFaceExport.fileNames(shards: shards.count))
        #expect(files.map(\.lastPathComponent).suffix(2) == [CheckpointStore.modelIndexFile, "config.json"])
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.safetensors").path))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty)

        // The index: every tensor exactly once, total_size = the tensor bytes.
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(CheckpointStore.modelIndexFile))) as! [String: Any]
        let weightMap = index["weight_map"] as! [String: String]
        #expect(weightMap.count == table.entries.count)
        #expect(Set(weightMap.keys) == Set(table.entries.map(\.name)))
        #expect((index["metadata"] as! [String: Any])["total_size"] as? Int == total)
        #expect(Set(weightMap.values) == Set(shards.map(\.lastPathComponent)))

        // Each file: 8-byte aligned header, format pt, the tensors the index gives it with their shapes and dtype,
        // contiguous offsets, and the file no larger than the limit unless it holds a single tensor.
        var seen = 0
        for shard in shards {
            let h = try Self.header(shard)
            #expect(h.length % 8 == 0)
            #expect(h.metadata == ["format": "pt"])
            let mine = Set(weightMap.filter { $0.value == shard.lastPathComponent }.keys)
            #expect(Set(h.tensors.keys) == mine)
            var bytes = 0
            for (tensor, info) in h.tensors {
                let e = try #require(table.entry(named: tensor))
                #expect(info.shape == e.shape && info.dtype == (dtype == .f32 ? "F32" : "BF16"))
                #expect(info.offsets[1] - info.offsets[0] == e.count * size)
                bytes += e.count * size
            }
            #expect(bytes <= limit || h.tensors.count == 1)
            let attributes = try FileManager.default.attributesOfItem(atPath: shard.path)
            #expect(attributes[.size] as? Int == 8 + Int(h.length) + bytes)
            seen += h.tensors.count
        }
        #expect(seen == table.entries.count)

        // config.json names the architecture and the dtype.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        #expect(config["model_type"] as? String == ["dense": "llama", "moe": "mixtral", "window": "mistral"][name])
        #expect(config["torch_dtype"] as? String == dtype.torchName)
        if name == "window" { #expect(config["sliding_window"] as? Int == 4) }

        // Reading it back: bit for bit in f32, the bf16 rounding of each value in bf16.
        let back = try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 1))
        #expect(back.config.isMoE == model.isMoE && back.config.window == model.window && back.table.count == table.count)
        var mismatches = 0
        for i in 0..<table.count {
            let expected = dtype == .f32 ? params.pointer[i] : Self.bf16(params.pointer[i])
            if back.parameters.pointer[i].bitPattern != expected.bitPattern { mismatches += 1 }
        }
        #expect(mismatches == 0)

        // A range that cuts tensors reads only what it needs, the same values.
        let range = (table.count / 3)..<(2 * table.count / 3 + 5)
        let part = FloatBuffer(count: range.count)
        try CheckpointStore.huggingFaceParameters(dir, table: table, elements: range, into: part.pointer)
        #expect((0..<range.count).allSatisfy { part.pointer[$0].bitPattern == back.parameters.pointer[range.lowerBound + $0].bitPattern })
    }

    @Test func aTensorLargerThanTheLimitGetsAFileOfItsOwn() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try Self.config("dense")
        let table = ParameterTable(config: model)
        let embedding = table.entry(.embedding)!, head = table.entry(.lmHead)!
        let limit = embedding.count * 4 - 4   // smaller than the embedding and the head, larger than everything else
        #expect(table.entries.filter { $0.count * 4 > limit }.count == 2)
        let plan = HuggingFaceExport.shardPlan(table: table, dtype: .f32, maxShardBytes: limit)
        #expect(plan.first.map { $0.map(\.name) } == [embedding.name])
        #expect(plan.last.map { $0.map(\.name) } == [head.name])
        #expect(plan.flatMap { $0 }.map(\.name) == table.entries.map(\.name), "files follow the table's order")
        #expect(plan.allSatisfy { $0.count == 1 || $0.reduce(0) { $0 + $1.count * 4 } <= limit })

        let params = Self.randomParameters(table, seed: 3)
        let files = try Self.export(params, model: model, table: table, to: dir, dtype: .f32, maxShardBytes: limit)
        let first = try Self.header(files[0])
        #expect(Array(first.tensors.keys) == [embedding.name])
        let back = try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 1))
        #expect(back.parameters.toArray() == params.toArray())
    }

    /// One file and no index when everything fits; exporting again into a folder that held a
    /// sharded export leaves no stale shard or index behind (transformers would read them).
    @Test func oneFileWhenItFitsAndStaleShardsAreRemoved() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try Self.config("moe")
        let table = ParameterTable(config: model)
        let params = Self.randomParameters(table, seed: 11)
        _ = try Self.export(params, model: model, table: table, to: dir, dtype: .f32, maxShardBytes: 2000)
        let files = try Self.export(params, model: model, table: table, to: dir, dtype: .bf16, maxShardBytes: 5_000_000_000)
        #expect(files.map(\.lastPathComponent) == ["model.safetensors", "config.json"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["config.json", "model.safetensors"])
        let h = try Self.header(files[0])
        #expect(h.tensors.count == table.entries.count && h.tensors.values.allSatisfy { $0.dtype == "BF16" })
        // Data in the table's order: offsets increase along the table.
        let offsets = table.entries.map { h.tensors[$0.name]!.offsets[0] }
        #expect(offsets == offsets.sorted())
        let back = try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 1))
        #expect((0..<table.count).allSatisfy { back.parameters.pointer[$0] == Self.bf16(params.pointer[$0]) })
    }

    /// An export that fails part-way (here the source throws at the last tensor) leaves the folder
    /// as it was: no shard of the new export is renamed into place, no temporary file remains.
    @Test func aFailedExportLeavesTheFolderAsItWas() throws {
        struct SourceFailed: Error {}
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try Self.config("dense")
        let table = ParameterTable(config: model)
        _ = try Self.export(Self.randomParameters(table, seed: 5), model: model, table: table, to: dir, dtype: .f32, maxShardBytes: 3000)
        func snapshot() throws -> [String: Data] {
            var out: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) { out[name] = try Data(contentsOf: dir.appendingPathComponent(name)) }
            return out
        }
        let before = try snapshot()
        let params = Self.randomParameters(table, seed: 6)
        #expect(throws: SourceFailed.self) {
            _ = try HuggingFaceExport.write(model: model, table: table, to: dir, dtype: .bf16, maxShardBytes: 3000) { e, dst in
                if e.name == table.entries.last!.name { throw SourceFailed() }
                dst.update(from: params.pointer + e.offset, count: e.count)
            }
        }
        #expect(try snapshot() == before)
    }

    @Test func bf16RoundsToNearestEven() {
        #expect(floatToBFloat16(1.0) == 0x3F80)
        #expect(floatToBFloat16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)   // tie, even below
        #expect(floatToBFloat16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)   // tie, even above
        #expect(floatToBFloat16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)   // above the tie
        #expect(floatToBFloat16(-2.0) == 0xC000)
        #expect(floatToBFloat16(.infinity) == 0x7F80)
        #expect(Float(bitPattern: UInt32(floatToBFloat16(.nan)) << 16).isNaN)
        #expect(floatToBFloat16(Float.greatestFiniteMagnitude) == 0x7F80)      // rounds up to infinity, as torch does
    }

    @Test func anIncompatibleModelIsRefused() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try ModelConfig.decodeForTests(#"{"num_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 16, "max_seq_len": 8, "norm": "layernorm", "activation": "gelu"}"#)
        let table = ParameterTable(config: model)
        #expect {
            _ = try Self.export(FloatBuffer(count: table.count), model: model, table: table, to: dir, dtype: .f32, maxShardBytes: 100)
        } throws: { ($0 as? CheckpointError)?.code == .incompatible }
    }

    @Test func aSplitFolderWithAMissingShardOrTensorNamesIt() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try Self.config("dense")
        let table = ParameterTable(config: model)
        let files = try Self.export(Self.randomParameters(table, seed: 1), model: model, table: table, to: dir, dtype: .f32, maxShardBytes: 3000)
        try FileManager.default.removeItem(at: files[1])
        #expect { try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 1)) } throws: {
            ($0 as? CheckpointError)?.code == .notFound && "\($0)".contains(files[1].lastPathComponent)
        }
        let index = dir.appendingPathComponent(CheckpointStore.modelIndexFile)
        try Data(#"{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00001-of-00009.safetensors"}}"#.utf8).write(to: index)
        #expect { try CheckpointStore.importHuggingFace(dir, pool: ThreadPool(threads: 1)) } throws: {
            ($0 as? CheckpointError)?.code == .missingTensor && "\($0)".contains("model.layers.0.input_layernorm.weight")
        }
    }

    @Test func sizes() {
        #expect(HuggingFaceExport.byteCount("5GB") == 5_000_000_000)
        #expect(HuggingFaceExport.byteCount("500MB") == 500_000_000)
        #expect(HuggingFaceExport.byteCount("2GiB") == 2 << 30)
        #expect(HuggingFaceExport.byteCount("1.5kb") == 1500)
        #expect(HuggingFaceExport.byteCount("4096") == 4096)
        #expect(HuggingFaceExport.byteCount("10 KiB") == 10240)
        for bad in ["", "0", "-5MB", "5XB", "GB", "1.5", "0.0001KB", "1e3", "5 G B"] {
            #expect(HuggingFaceExport.byteCount(bad) == nil, "\(bad)")
        }
    }
}
