import Checkpoint
import Data
import Foundation
import Model
import Tensor

/// A model ready to serve: its weights in a `Transformer` and the tokenizer it was trained with.
/// Loads a ZeroTrain checkpoint (a checkpoint directory's latest step or one step folder, with
/// any number of shard files) or a Hugging Face model folder (config.json and safetensors,
/// sharded or not), or an int8 folder of `zerotrain quantize`; the tokenizer is the folder's
/// tokenizer.json, or the byte-level one.
public struct ServedModel {
    public let transformer: Transformer
    public let tokenizer: ModelTokenizer
    /// The folder the weights came from (the step folder for a checkpoint).
    public let folder: URL
    public let isHuggingFace: Bool

    /// The part of a checkpoint manifest's config that serving needs (the rest is ignored).
    struct CheckpointConfig: Codable, Sendable {
        var model: ModelConfig
    }

    public static func isHuggingFaceFolder(_ url: URL) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: url.appendingPathComponent(CheckpointStore.huggingFaceConfigFile).path)
            && !fm.fileExists(atPath: url.appendingPathComponent(CheckpointStore.manifestFile).path)
            && !fm.fileExists(atPath: url.appendingPathComponent(CheckpointStore.latestFile).path)
    }

    public static func load(_ url: URL, pool: ThreadPool) throws -> ServedModel {
        let model: Transformer, folder: URL
        let hf = isHuggingFaceFolder(url)
        if QuantizedModel.isQuantized(url) {
            // `zerotrain quantize`'s folder: every linear layer runs int8.
            folder = url
            model = try QuantizedModel.load(url, pool: pool)
        } else if hf {
            folder = url
            model = try CheckpointStore.importHuggingFace(url, pool: pool)
        } else {
            let reader = try CheckpointReader<CheckpointConfig>(url)
            folder = reader.folder
            model = try Transformer(config: reader.manifest.config.model, pool: pool)
            try reader.requireLayout(of: model.table)
            try reader.read(.parameters, elements: 0..<model.table.count, into: model.parameters.pointer)
        }
        let tokenizer = try ModelTokenizer.load(folder: folder)
        guard tokenizer.vocabularySize <= model.config.vocabSize else {
            throw ServeError(.badInput, "\(folder.path): the tokenizer has \(tokenizer.vocabularySize) tokens, more than the model's vocab_size (\(model.config.vocabSize))")
        }
        return ServedModel(transformer: model, tokenizer: tokenizer, folder: folder, isHuggingFace: hf)
    }
}
