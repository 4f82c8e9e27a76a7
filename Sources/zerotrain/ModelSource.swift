import Checkpoint
import Foundation
import Model
import Tensor
import Training

/// A model's weights as the export and quantize commands read them: a ZeroTrain checkpoint
/// (its latest step, or one step folder; sharded, each tensor read from the shards it spans and
/// verified) or a Hugging Face folder. The one place in the CLI that knows the checkpoint formats.
struct ModelSource {
    let config: ModelConfig
    /// Where the model records its tokenizer: the Hugging Face folder, or the checkpoint's step folder.
    let folder: URL
    /// Fills one tensor (entry.count floats) from the source.
    let read: (ParameterEntry, UnsafeMutablePointer<Float>) throws -> Void

    init(_ url: URL) throws {
        let fm = FileManager.default
        let isHuggingFace = fm.fileExists(atPath: url.appendingPathComponent(CheckpointStore.huggingFaceConfigFile).path)
            && !fm.fileExists(atPath: url.appendingPathComponent(CheckpointStore.manifestFile).path)
            && !fm.fileExists(atPath: url.appendingPathComponent(CheckpointStore.latestFile).path)
        if isHuggingFace {
            if QuantizedModel.isQuantized(url) {
                throw CheckpointError(.incompatible, "\(url.path) is an int8 quantized folder; give the fp32 checkpoint or Hugging Face folder it was made from")
            }
            config = try CheckpointStore.huggingFaceConfig(url)
            folder = url
            let weights = try HuggingFaceFolder(url)
            read = { entry, dst in try weights.read(entry, into: dst) }
            return
        }
        let reader = try CheckpointReader<TrainConfig>(url)
        config = reader.manifest.config.model
        folder = reader.folder
        read = { entry, dst in
            try reader.read(.parameters, elements: entry.offset..<(entry.offset + entry.count), into: dst)
        }
    }

    /// A new fp32 (or bf16) model holding the source's parameters.
    func model(pool: ThreadPool, precision: Precision = .fp32) throws -> Transformer {
        let model = try Transformer(config: config, pool: pool, precision: precision)
        for e in model.table.entries { try read(e, model.parameters.pointer + e.offset) }
        return model
    }
}
