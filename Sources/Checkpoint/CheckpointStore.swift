import Foundation
import Model
import Tensor

/// A checkpoint directory (`training.checkpoint_dir`), and everything that reads or writes
/// checkpoints and Hugging Face folders: the trainer, the coordinator and `zerotrain generate`
/// all go through it. Layout, format 2 (docs/checkpoint-format.md):
///
/// ```
/// DIR/latest                                  "step-00000200\n", the newest committed checkpoint
/// DIR/step-00000200/
///     manifest.json                           CheckpointManifest, written last by `commit`
///     shard-00000-of-00002.safetensors        rank 0's slice of parameters, exp_avg, exp_avg_sq
///     shard-00001-of-00002.safetensors
///     config.json                             Hugging Face config (llama/mistral/mixtral-compatible models)
/// ```
///
/// Ranks write their shards into `step-N.tmp/` (`ShardWriter`), then `commit` writes the manifest,
/// renames the folder and replaces `latest`; `CheckpointReader` reads any element range back.
/// `save`, `state`, `loadParameters`, `optimizerState`, `Contents` and `TrainerState` are the
/// format-1 API (one rank writing the gathered state), kept until their callers move to format 2.
public struct CheckpointStore: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    public static let latestFile = "latest"
    public static let modelFile = "model.safetensors"
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

    /// The step folder `url` refers to: a step folder with a manifest.json, or a checkpoint
    /// directory whose `latest` file names one. A folder without a manifest (an interrupted
    /// save's `step-N.tmp`) is never a checkpoint.
    public static func resolve(_ url: URL) throws -> URL {
        let fm = FileManager.default
        if fm.fileExists(atPath: url.appendingPathComponent(manifestFile).path) { return url }
        let latest = url.appendingPathComponent(latestFile)
        if fm.fileExists(atPath: latest.path) {
            let name = try readText(latest).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !name.isEmpty, !name.contains("/") else {
                throw CheckpointError(.malformed, "\(latest.path) does not name a step folder (it holds \"\(name)\")")
            }
            let folder = url.appendingPathComponent(name)
            guard fm.fileExists(atPath: folder.appendingPathComponent(manifestFile).path) else { throw noManifest(folder) }
            return folder
        }
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CheckpointError(.notFound, "\(url.path) is not a checkpoint: no such folder")
        }
        let names = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
        if url.lastPathComponent.hasPrefix("step-") || names.contains(where: { $0.hasPrefix("shard-") && $0.hasSuffix(".safetensors") }) {
            throw noManifest(url)
        }
        throw CheckpointError(.notFound, "\(url.path) is not a checkpoint: it has no \(manifestFile) and no \(latestFile) file")
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

    /// The parameters of a checkpoint (a step folder, or a directory whose `latest` names one) as
    /// one flat buffer in `table`'s layout, assembled from the shard files; the checkpoint's
    /// tensor layout must be `table`'s.
    public static func parameters(of folder: URL, table: ParameterTable) throws -> FloatBuffer {
        let reader = try CheckpointReader<IgnoredConfig>(folder)
        try reader.requireLayout(of: table)
        let full = FloatBuffer(count: table.count)
        try reader.read(.parameters, elements: 0..<table.count, into: full.pointer)
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

    // MARK: Hugging Face folders (config.json + model.safetensors)

    /// Reads a Hugging Face model folder into a new model.
    public static func importHuggingFace(_ folder: URL, pool: ThreadPool) throws -> Transformer {
        let configURL = folder.appendingPathComponent(huggingFaceConfigFile)
        let config = try ModelConfig(huggingFaceJSON: try readData(configURL), path: configURL.path)
        let model = try Transformer(config: config, pool: pool)
        try ModelWeights.load(SafeTensorsFile(contentsOf: folder.appendingPathComponent(modelFile)), table: model.table,
                              into: model.parameters)
        return model
    }

    /// Elements `elements` of the parameters in a Hugging Face folder's model.safetensors
    /// (the folder's model must have `table`'s layout), written to `out[0…]`.
    public static func huggingFaceParameters(_ folder: URL, table: ParameterTable, elements: Range<Int>,
                                             into out: UnsafeMutablePointer<Float>) throws {
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(modelFile))
        let full = elements.count == table.count ? nil : FloatBuffer(count: table.count)
        try ModelWeights.load(file, table: table, into: full?.pointer ?? out)
        if let full { out.update(from: full.pointer + elements.lowerBound, count: elements.count) }
    }

    /// Writes `model` as a Hugging Face folder: config.json and model.safetensors.
    public static func exportHuggingFace(_ model: Transformer, to folder: URL) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try model.config.huggingFaceJSON().write(to: folder.appendingPathComponent(huggingFaceConfigFile), options: .atomic)
        } catch {
            throw CheckpointError(.io, "cannot write \(folder.path)", cause: error)
        }
        var writer = SafeTensorsWriter()
        ModelWeights.add(model.parameters, table: model.table, to: &writer)
        try writer.write(to: folder.appendingPathComponent(modelFile))
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
