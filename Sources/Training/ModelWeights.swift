import Checkpoint
import Foundation
import Model
import Tensor

/// Moves parameters between a model's flat buffer and safetensors files with Hugging Face names.
public enum ModelWeights {
    /// Copies every tensor of `table` from `file` into `buffer`; a missing tensor or a wrong
    /// shape is an error naming the tensor. Tensors in the file that the model lacks are ignored
    /// (Hugging Face files may carry buffers such as rotary tables).
    public static func load(_ file: SafeTensorsFile, table: ParameterTable, into buffer: FloatBuffer, prefix: String = "") throws {
        precondition(buffer.count == table.count, "buffer does not match the parameter table")
        try load(file, table: table, into: buffer.pointer, prefix: prefix)
    }

    /// As above, into a flat buffer of `table.count` elements at `pointer`.
    public static func load(_ file: SafeTensorsFile, table: ParameterTable, into pointer: UnsafeMutablePointer<Float>,
                            prefix: String = "") throws {
        for e in table.entries {
            try file.read(prefix + e.name, into: UnsafeMutableBufferPointer(start: pointer + e.offset, count: e.count), shape: e.shape)
        }
    }

    /// Adds every tensor of `table` in `buffer` to `writer` under its name (with `prefix`).
    public static func add(_ buffer: FloatBuffer, table: ParameterTable, to writer: inout SafeTensorsWriter, prefix: String = "") {
        for e in table.entries {
            writer.add(prefix + e.name, shape: e.shape, floats: UnsafeBufferPointer(buffer.slice(e.offset, e.count)))
        }
    }

    /// Reads a Hugging Face model directory (config.json + model.safetensors) into a new model.
    public static func loadHuggingFace(directory: URL, pool: ThreadPool) throws -> Transformer {
        let configURL = directory.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: configURL) else {
            throw TrainingError(.badInput, "cannot read \(configURL.path)")
        }
        let config = try ModelConfig(huggingFaceJSON: data, path: configURL.path)
        let model = try Transformer(config: config, pool: pool)
        let file = try SafeTensorsFile(contentsOf: directory.appendingPathComponent("model.safetensors"))
        try load(file, table: model.table, into: model.parameters)
        return model
    }

    /// Writes `model` as a Hugging Face directory: config.json and model.safetensors.
    public static func saveHuggingFace(_ model: Transformer, to directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try model.config.huggingFaceJSON().write(to: directory.appendingPathComponent("config.json"), options: .atomic)
        } catch {
            throw TrainingError(.runtime, "cannot write \(directory.path): \((error as NSError).localizedDescription)")
        }
        var writer = SafeTensorsWriter()
        add(model.parameters, table: model.table, to: &writer)
        try writer.write(to: directory.appendingPathComponent("model.safetensors"))
    }
}
