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
public struct CheckpointStore: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    public static let latestFile = "latest"
    public static let modelFile = "model.safetensors"
    /// A sharded Hugging Face folder's index: `{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}`.
    public static let modelIndexFile = "model.safetensors.index.json"
    public static let huggingFaceConfigFile = "config.json"
    /// The tokenizer a checkpoint or an export records (Hugging Face tokenizer.json); none = byte-level.
    public static let tokenizerFile = "tokenizer.json"

    /// "step-00000200".
    public static func folderName(step: Int) -> String { String(format: "step-%08d", step) }

    /// The folder of `step` in this directory (whether or not it exists).
    public func folder(step: Int) -> URL { directory.appendingPathComponent(Self.folderName(step: step)) }

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

    // MARK: Hugging Face folders (config.json + model.safetensors, or an index and shard files)

    /// Reads a Hugging Face model folder into a new model: config.json and the weights, from one
    /// model.safetensors or from the shard files of model.safetensors.index.json (see
    /// `HuggingFaceFolder`); BF16/F16 weights are converted to F32.
    public static func importHuggingFace(_ folder: URL, pool: ThreadPool, precision: Precision = .fp32) throws -> Transformer {
        let config = try huggingFaceConfig(folder)
        let weights = try HuggingFaceFolder(folder)
        let model = try Transformer(config: config, pool: pool, precision: precision)
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
