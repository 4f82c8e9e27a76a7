import Foundation
import Model
import Tensor

/// A checkpoint directory (`training.checkpoint_dir`), and everything that reads or writes
/// checkpoints and Hugging Face folders: the trainer, the coordinator and `zerotrain generate`
/// all go through it. Layout (docs/checkpoint-format.md):
///
/// ```
/// DIR/latest                       "step-00000200\n", the newest complete checkpoint
/// DIR/step-00000200/
///     model.safetensors            parameters, Hugging Face names
///     optimizer.safetensors        exp_avg.<name>, exp_avg_sq.<name>
///     config.json                  Hugging Face config (llama/mistral/mixtral-compatible models)
///     trainer_state.json           TrainerState: step, data position, seed, config
///     partition_plan.json          with several ranks: how the state was sharded
/// ```
///
/// A step folder is written as `step-N.tmp/` and renamed when complete, then `latest` is
/// replaced atomically, so a crash mid-write never leaves a partial checkpoint behind a valid name.
public struct CheckpointStore: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    public static let latestFile = "latest"
    public static let modelFile = "model.safetensors"
    /// A sharded Hugging Face folder's index: `{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}`.
    public static let modelIndexFile = "model.safetensors.index.json"
    public static let optimizerFile = "optimizer.safetensors"
    public static let stateFile = "trainer_state.json"
    public static let huggingFaceConfigFile = "config.json"
    public static let partitionPlanFile = "partition_plan.json"

    /// "step-00000200".
    public static func folderName(step: Int) -> String { String(format: "step-%08d", step) }

    /// The folder of `step` in this directory (whether or not it exists).
    public func folder(step: Int) -> URL { directory.appendingPathComponent(Self.folderName(step: step)) }

    /// What one checkpoint holds: the full, unsharded state.
    public struct Contents<Config: Codable & Sendable> {
        public var model: ModelConfig
        public var table: ParameterTable
        public var parameters: FloatBuffer
        public var expAvg: FloatBuffer
        public var expAvgSq: FloatBuffer
        public var state: TrainerState<Config>
        /// How the state was sharded when written (JSON), with several ranks.
        public var partitionPlan: Data?

        public init(model: ModelConfig, table: ParameterTable, parameters: FloatBuffer, expAvg: FloatBuffer, expAvgSq: FloatBuffer,
                    state: TrainerState<Config>, partitionPlan: Data? = nil) {
            self.model = model
            self.table = table
            self.parameters = parameters
            self.expAvg = expAvg
            self.expAvgSq = expAvgSq
            self.state = state
            self.partitionPlan = partitionPlan
        }
    }

    /// Writes `contents` as the folder of its step and points `latest` at it; returns the folder.
    @discardableResult
    public func save<Config>(_ contents: Contents<Config>) throws -> URL {
        let fm = FileManager.default
        let name = Self.folderName(step: contents.state.step)
        let final = directory.appendingPathComponent(name)
        let temp = directory.appendingPathComponent(name + ".tmp")
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            if fm.fileExists(atPath: temp.path) { try fm.removeItem(at: temp) }
            try fm.createDirectory(at: temp, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, "cannot create checkpoint folder \(temp.path)", cause: error)
        }
        var weights = SafeTensorsWriter()
        ModelWeights.add(contents.parameters, table: contents.table, to: &weights)
        try weights.write(to: temp.appendingPathComponent(Self.modelFile))
        var optimizerState = SafeTensorsWriter()
        ModelWeights.add(contents.expAvg, table: contents.table, to: &optimizerState, prefix: "exp_avg.")
        ModelWeights.add(contents.expAvgSq, table: contents.table, to: &optimizerState, prefix: "exp_avg_sq.")
        try optimizerState.write(to: temp.appendingPathComponent(Self.optimizerFile))
        do {
            if contents.model.isHuggingFaceCompatible {
                try contents.model.huggingFaceJSON().write(to: temp.appendingPathComponent(Self.huggingFaceConfigFile))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(contents.state).write(to: temp.appendingPathComponent(Self.stateFile))
            if let plan = contents.partitionPlan { try plan.write(to: temp.appendingPathComponent(Self.partitionPlanFile)) }
            if fm.fileExists(atPath: final.path) { try fm.removeItem(at: final) }
            try fm.moveItem(at: temp, to: final)
            try Data((name + "\n").utf8).write(to: directory.appendingPathComponent(Self.latestFile), options: .atomic)
        } catch {
            throw CheckpointError(.io, "cannot write checkpoint \(final.path)", cause: error)
        }
        return final
    }

    // MARK: reading

    /// The step folder `url` refers to: a step folder itself, or a checkpoint directory whose
    /// `latest` file names one.
    public static func resolve(_ url: URL) throws -> URL {
        let fm = FileManager.default
        if fm.fileExists(atPath: url.appendingPathComponent(stateFile).path) { return url }
        let latest = url.appendingPathComponent(latestFile)
        guard fm.fileExists(atPath: latest.path) else {
            throw CheckpointError(.notFound, "\(url.path) is not a checkpoint (no \(stateFile) and no \(latestFile) file)")
        }
        let folder = url.appendingPathComponent(try readText(latest).trimmingCharacters(in: .whitespacesAndNewlines))
        guard fm.fileExists(atPath: folder.appendingPathComponent(stateFile).path) else {
            throw CheckpointError(.notFound, "\(latest.path) names \(folder.lastPathComponent), which is not a complete checkpoint")
        }
        return folder
    }

    /// The trainer state of a step folder.
    public static func state<Config>(of folder: URL, as: Config.Type) throws -> TrainerState<Config> {
        let path = folder.appendingPathComponent(stateFile)
        let data = try readData(path)
        do {
            return try JSONDecoder().decode(TrainerState<Config>.self, from: data)
        } catch {
            throw CheckpointError(.malformed, "\(path.path) is not a valid trainer state", cause: error)
        }
    }

    /// The parameters of a step folder, as one flat buffer in `table`'s layout.
    public static func parameters(of folder: URL, table: ParameterTable) throws -> FloatBuffer {
        let full = FloatBuffer(count: table.count)
        try loadParameters(of: folder, table: table, into: full)
        return full
    }

    /// The parameters of a step folder, into `buffer` (`table.count` elements), e.g. a model's own.
    public static func loadParameters(of folder: URL, table: ParameterTable, into buffer: FloatBuffer) throws {
        try ModelWeights.load(SafeTensorsFile(contentsOf: folder.appendingPathComponent(modelFile)), table: table, into: buffer)
    }

    /// The AdamW moments of a step folder, in `table`'s layout.
    public static func optimizerState(of folder: URL, table: ParameterTable) throws -> (expAvg: FloatBuffer, expAvgSq: FloatBuffer) {
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(optimizerFile))
        let m = FloatBuffer(count: table.count), v = FloatBuffer(count: table.count)
        try ModelWeights.load(file, table: table, into: m, prefix: "exp_avg.")
        try ModelWeights.load(file, table: table, into: v, prefix: "exp_avg_sq.")
        return (m, v)
    }

    // MARK: Hugging Face folders (config.json + model.safetensors, or an index and shard files)

    /// Reads a Hugging Face model folder into a new model: config.json and the weights, from one
    /// model.safetensors or from the shard files of model.safetensors.index.json (see
    /// `HuggingFaceFolder`); BF16/F16 weights are converted to F32.
    public static func importHuggingFace(_ folder: URL, pool: ThreadPool) throws -> Transformer {
        let config = try huggingFaceConfig(folder)
        let weights = try HuggingFaceFolder(folder)
        let model = try Transformer(config: config, pool: pool)
        try weights.read(table: model.table, elements: 0..<model.table.count, into: model.parameters.pointer)
        return model
    }

    /// The model config of a Hugging Face folder's config.json.
    public static func huggingFaceConfig(_ folder: URL) throws -> ModelConfig {
        let configURL = folder.appendingPathComponent(huggingFaceConfigFile)
        return try ModelConfig(huggingFaceJSON: try readData(configURL), path: configURL.path)
    }

    /// Elements `elements` of the parameters in a Hugging Face folder (the folder's model must
    /// have `table`'s layout), written to `out[0…]`; only the shard files holding them are read.
    public static func huggingFaceParameters(_ folder: URL, table: ParameterTable, elements: Range<Int>,
                                             into out: UnsafeMutablePointer<Float>) throws {
        try HuggingFaceFolder(folder).read(table: table, elements: elements, into: out)
    }

    /// Writes `model` as a Hugging Face folder: config.json and one F32 model.safetensors.
    public static func exportHuggingFace(_ model: Transformer, to folder: URL) throws {
        _ = try HuggingFaceExport.write(model: model.config, table: model.table, to: folder, dtype: .f32, maxShardBytes: .max) { e, dst in
            dst.update(from: model.parameters.pointer + e.offset, count: e.count)
        }
    }

    // MARK: files

    /// A file's bytes: a missing file is the caller's mistake (`notFound`), a file that exists
    /// but cannot be read is an I/O failure (`io`).
    static func readData(_ url: URL, options: Data.ReadingOptions = []) throws -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError(.notFound, "cannot read \(url.path): no such file")
        }
        do {
            return try Data(contentsOf: url, options: options)
        } catch {
            throw CheckpointError(.io, "cannot read \(url.path)", cause: error)
        }
    }

    static func readText(_ url: URL) throws -> String {
        guard let text = String(data: try readData(url), encoding: .utf8) else {
            throw CheckpointError(.malformed, "\(url.path) is not UTF-8 text")
        }
        return text
    }
}
