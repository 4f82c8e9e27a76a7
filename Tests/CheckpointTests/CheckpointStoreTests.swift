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

    /// A checkpoint of `model` at `step` written by two ranks; its parameters are `i + step`.
    static func save(step: Int, table: ParameterTable, store: CheckpointStore) throws -> (folder: URL, parameters: [Float]) {
        let p = FloatBuffer(count: table.count), m = FloatBuffer(count: table.count), v = FloatBuffer(count: table.count)
        for i in 0..<table.count { p.pointer[i] = Float(i) + Float(step); m.pointer[i] = -Float(i); v.pointer[i] = Float(i) / 2 }
        var files: [CheckpointFile] = []
        let half = table.count / 2
        for (rank, range) in [0..<half, half..<table.count].enumerated() {
            files.append(try ShardWriter.write(into: store.pendingFolder(step: step), rank: rank, worldSize: 2, start: range.lowerBound, step: step,
                                               seed: 9, parameters: UnsafeBufferPointer(p.slice(range.lowerBound, range.count)),
                                               expAvg: UnsafeBufferPointer(m.slice(range.lowerBound, range.count)),
                                               expAvgSq: UnsafeBufferPointer(v.slice(range.lowerBound, range.count))))
        }
        if let config = try store.writeHuggingFaceConfig(model, step: step) { files.append(config) }
        let manifest = CheckpointManifest(step: step, worldSize: 2, zeroStage: 1, config: Config(name: "c\(step)"),
                                          tensors: TensorLayout.layouts(of: table),
                                          dataCursor: DataCursor(samplesConsumed: 4 * step, globalBatch: 4, seed: 9),
                                          schedule: ScheduleState(kind: "constant", peakLR: 1e-3, warmupSteps: 0, totalSteps: 10, numCycles: 0.5, nextLR: 1e-3),
                                          skippedSteps: 0, files: files)
        return (try store.commit(manifest, keep: 3), p.toArray())
    }

    @Test func savesStepFoldersAndPointsLatestAtTheNewest() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = ParameterTable(config: Self.model)
        let store = CheckpointStore(directory: dir)
        _ = try Self.save(step: 2, table: table, store: store)
        let (saved, parameters) = try Self.save(step: 5, table: table, store: store)
        #expect(saved.lastPathComponent == "step-00000005")
        #expect(try String(contentsOf: dir.appendingPathComponent("latest"), encoding: .utf8) == "step-00000005\n")
        let folder = try CheckpointStore.resolve(dir)
        #expect(folder.lastPathComponent == "step-00000005")
        #expect(try CheckpointStore.resolve(store.folder(step: 2)).lastPathComponent == "step-00000002")
        let reader = try CheckpointReader<Config>(folder)
        #expect(reader.manifest.step == 5 && reader.manifest.dataCursor.samplesConsumed == 20 && reader.manifest.config == Config(name: "c5"))
        #expect(try CheckpointStore.parameters(of: folder, table: table).toArray() == parameters)
        #expect(try CheckpointStore.parameters(of: dir, table: table).toArray() == parameters)
        // config.json is written, listed and checksummed like the shards.
        #expect(Self.model.isHuggingFaceCompatible)
        let config = try #require(reader.manifest.files.first { $0.name == "config.json" })
        let configBytes = try Data(contentsOf: folder.appendingPathComponent("config.json")).count
        #expect(config.rank == nil && config.bytes == configBytes)
        try reader.verify()
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("step-00000005.tmp").path))
    }

    /// The parameters of a checkpoint load only into a model of the same layout.
    @Test func parametersOfAnotherModelAreIncompatible() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = try Self.save(step: 1, table: ParameterTable(config: Self.model), store: CheckpointStore(directory: dir)).folder
        var other = Self.model
        other.hiddenSize = 16
        #expect { _ = try CheckpointStore.parameters(of: folder, table: ParameterTable(config: other)) } throws: {
            ($0 as? CheckpointError)?.code == .incompatible
        }
    }

    @Test func aFolderThatIsNotACheckpointIsBadInput() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect { try CheckpointStore.resolve(dir) } throws: { ($0 as? CheckpointError)?.kind == .badInput }
        #expect { try SafeTensorsFile(contentsOf: dir.appendingPathComponent("missing.safetensors")) } throws: {
            ($0 as? CheckpointError)?.code == .notFound && ($0 as? CheckpointError)?.kind == .badInput
        }
    }

    /// A file that exists but cannot be read (here: a directory where the manifest should be) is
    /// an I/O failure — a runtime error (exit 1), not the user's input (exit 2) — and keeps its cause.
    @Test func anUnreadableFileIsARuntimeFailure() throws {
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let table = ParameterTable(config: Self.model)
        let folder = try Self.save(step: 1, table: table, store: CheckpointStore(directory: dir)).folder
        let manifest = folder.appendingPathComponent("manifest.json")
        try FileManager.default.removeItem(at: manifest)
        try FileManager.default.createDirectory(at: manifest, withIntermediateDirectories: false)
        #expect { _ = try CheckpointStore.parameters(of: folder, table: table) } throws: { error in
            guard let e = error as? CheckpointError else { return false }
            return e.code == .io && e.kind == .runtime && e.cause != nil && e.message.contains("manifest.json")
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
