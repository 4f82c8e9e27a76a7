import Checkpoint
import Common
import Foundation
import Model
import Tensor
import Testing

/// The checkpoint directory layout, the `latest` pointer, and which failures are the user's.
@Suite struct CheckpointStoreTests {
    struct Config: Codable, Sendable, Equatable { var name: String }

    static func tempDir() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-store-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static let model = try! ModelConfig.decodeForTests(#"{"num_layers": 1, "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 16, "max_seq_len": 8}"#)

    static func contents(step: Int, table: ParameterTable) -> CheckpointStore.Contents<Config> {
        let p = FloatBuffer(count: table.count), m = FloatBuffer(count: table.count), v = FloatBuffer(count: table.count)
        for i in 0..<table.count { p.pointer[i] = Float(i) + Float(step); m.pointer[i] = -Float(i); v.pointer[i] = Float(i) / 2 }
        return CheckpointStore.Contents(model: model, table: table, parameters: p, expAvg: m, expAvgSq: v,
                                        state: TrainerState(step: step, dataPosition: 4 * step, seed: 9, config: Config(name: "c\(step)")))
    }

    @Test func savesStepFoldersAndPointsLatestAtTheNewest() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = ParameterTable(config: Self.model)
        let store = CheckpointStore(directory: dir)
        try store.save(Self.contents(step: 2, table: table))
        let saved = try store.save(Self.contents(step: 5, table: table))
        #expect(saved.lastPathComponent == "step-00000005")
        #expect(try String(contentsOf: dir.appendingPathComponent("latest"), encoding: .utf8) == "step-00000005\n")
        let folder = try CheckpointStore.resolve(dir)
        #expect(folder.lastPathComponent == "step-00000005")
        #expect(try CheckpointStore.resolve(store.folder(step: 2)).lastPathComponent == "step-00000002")
        let state = try CheckpointStore.state(of: folder, as: Config.self)
        #expect(state.step == 5 && state.dataPosition == 20 && state.seed == 9 && state.config == Config(name: "c5"))
        #expect(try CheckpointStore.parameters(of: folder, table: table).toArray() == Self.contents(step: 5, table: table).parameters.toArray())
        let moments = try CheckpointStore.optimizerState(of: folder, table: table)
        #expect(moments.expAvg.toArray() == Self.contents(step: 5, table: table).expAvg.toArray())
        #expect(moments.expAvgSq.toArray() == Self.contents(step: 5, table: table).expAvgSq.toArray())
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("step-00000005.tmp").path))
    }

    @Test func aFolderThatIsNotACheckpointIsBadInput() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect { try CheckpointStore.resolve(dir) } throws: { ($0 as? CheckpointError)?.kind == .badInput }
        #expect { try SafeTensorsFile(contentsOf: dir.appendingPathComponent("missing.safetensors")) } throws: {
            ($0 as? CheckpointError)?.code == .notFound && ($0 as? CheckpointError)?.kind == .badInput
        }
    }

    /// A file that exists but cannot be read (here: a directory where the weights should be) is
    /// an I/O failure — a runtime error (exit 1), not the user's input (exit 2) — and keeps its cause.
    @Test func anUnreadableFileIsARuntimeFailure() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = ParameterTable(config: Self.model)
        let folder = try CheckpointStore(directory: dir).save(Self.contents(step: 1, table: table))
        let weights = folder.appendingPathComponent("model.safetensors")
        try FileManager.default.removeItem(at: weights)
        try FileManager.default.createDirectory(at: weights, withIntermediateDirectories: false)
        #expect { _ = try CheckpointStore.parameters(of: folder, table: table) } throws: { error in
            guard let e = error as? CheckpointError else { return false }
            return e.code == .io && e.kind == .runtime && e.cause != nil && e.message.contains("model.safetensors")
        }
    }

    /// A model exported as a Hugging Face folder (config.json + model.safetensors) imports back
    /// with the same config and the same parameters.
    @Test func huggingFaceExportImportsBack() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let pool = ThreadPool(threads: 1)
        let model = try Transformer(config: Self.model, pool: pool)
        model.initializeParameters(seed: 3)
        try CheckpointStore.exportHuggingFace(model, to: dir)
        let back = try CheckpointStore.importHuggingFace(dir, pool: pool)
        #expect(back.config.numLayers == model.config.numLayers && back.config.hiddenSize == model.config.hiddenSize
                && back.config.vocabSize == model.config.vocabSize && back.table.count == model.table.count)
        #expect(back.parameters.toArray() == model.parameters.toArray())
    }
}


extension ModelConfig {
    static func decodeForTests(_ json: String) throws -> ModelConfig { try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)) }
}
