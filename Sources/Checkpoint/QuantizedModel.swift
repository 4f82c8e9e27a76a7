import Foundation
import Model
import Tensor

/// A dynamically quantized model folder (`zerotrain quantize`): config.json with a
/// `quantization_config`, and model.safetensors holding
/// * each quantized linear weight as I8 under its Hugging Face name ([out, in]) and its scales as
///   F32 under `<name>_scale` ([1] per tensor, [out] per output channel; zero points are 0);
///   with tied embeddings the head's int8 copy is `lm_head.weight` (+ `lm_head.weight_scale`);
/// * every other tensor (embedding, norms, MoE router) as F32 under its name.
///
/// Loading gives a `Transformer` in `Precision.int8` whose `quantized` weights are the file's and
/// whose fp32 parameters hold the dequantized values (scale · q) of the quantized tensors.
public enum QuantizedModel {
    public static let weightsFile = "model.safetensors"
    public static let method = "zerotrain_dynamic_int8"
    static let scaleSuffix = "_scale"
    static let tiedHeadName = "lm_head.weight"

    /// The name a quantized entry is stored under (the tied head's copy of the embedding is `lm_head.weight`).
    static func storedName(_ e: ParameterEntry, config: ModelConfig) -> String {
        e.kind == .embedding && config.tieEmbeddings ? tiedHeadName : e.name
    }

    /// True when `folder`'s config.json names this quantization method.
    public static func isQuantized(_ folder: URL) -> Bool {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent(CheckpointStore.huggingFaceConfigFile)),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let q = json["quantization_config"] as? [String: Any] else { return false }
        return q["quant_method"] as? String == method
    }

    /// Writes `model` (with `quantized` set) to `folder`; returns the files written.
    @discardableResult
    public static func write(_ model: Transformer, to folder: URL) throws -> [URL] {
        guard let quantized = model.quantized else {
            throw CheckpointError(.invalidArgument, "the model has no quantized weights to write")
        }
        let config = model.config, table = model.table
        var writer = SafeTensorsWriter()
        writer.metadata["zerotrain_quantization"] = method
        writer.metadata["granularity"] = quantized.perChannel ? "per_channel" : "per_tensor"
        let asInt8 = Set(quantized.weights.map(\.entry.name))
        for e in table.entries where !asInt8.contains(e.name) || (e.kind == .embedding && config.tieEmbeddings) {
            writer.add(e.name, shape: e.shape, floats: UnsafeBufferPointer(model.parameters.slice(e.offset, e.count)))
        }
        for w in quantized.weights {
            let name = storedName(w.entry, config: config)
            writer.add(name, shape: w.entry.shape, int8s: UnsafeBufferPointer(w.values))
            writer.add(name + scaleSuffix, shape: [w.scales.count], floats: UnsafeBufferPointer(w.scales))
        }
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, "cannot create \(folder.path)", cause: error)
        }
        let weightsURL = folder.appendingPathComponent(weightsFile)
        try writer.write(to: weightsURL)
        let configURL = folder.appendingPathComponent(CheckpointStore.huggingFaceConfigFile)
        do {
            var json = try JSONSerialization.jsonObject(with: config.huggingFaceJSON()) as! [String: Any]
            json["quantization_config"] = [
                "quant_method": method,
                "weights": "int8, symmetric (zero point 0)",
                "granularity": quantized.perChannel ? "per_channel" : "per_tensor",
                "activations": "uint8, affine, per call from min/max (reduce_range: [0, 127])",
                "not_quantized": ["embedding lookup", "norms", "moe router"],
            ] as [String: Any]
            var data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
            data.append(0x0A)
            try data.write(to: configURL, options: .atomic)
        } catch {
            throw CheckpointError(.io, "cannot write \(configURL.path)", cause: error)
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path)
        where HuggingFaceExport.isWeightFile(name) && name != weightsFile {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
        return [weightsURL, configURL]
    }

    /// Loads a quantized folder into a new int8 model.
    public static func load(_ folder: URL, pool: ThreadPool) throws -> Transformer {
        guard isQuantized(folder) else {
            throw CheckpointError(.incompatible, "\(folder.path) is not a quantized model folder (config.json has no quantization_config of \(method)); make one with zerotrain quantize")
        }
        let config = try CheckpointStore.huggingFaceConfig(folder)
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(weightsFile))
        let model = try Transformer(config: config, pool: pool, precision: .int8)
        let table = model.table
        let targets = QuantizedWeights.quantizedEntries(table, config: config)
        let firstScale = try file.floats(storedName(targets[0], config: config) + scaleSuffix)
        let quantized = QuantizedWeights(perChannel: firstScale.count > 1 || file.metadata["granularity"] == "per_channel")
        for e in table.entries where !(targets.contains(e) && !(e.kind == .embedding && config.tieEmbeddings)) {
            try file.read(e.name, into: model.parameters.slice(e.offset, e.count), shape: e.shape)
        }
        var values = [Int8](repeating: 0, count: targets.map(\.count).max() ?? 0)
        for e in targets {
            let name = storedName(e, config: config)
            try values.withUnsafeMutableBufferPointer { try file.read(name, into: UnsafeMutableBufferPointer(rebasing: $0[0..<e.count]), shape: e.shape) }
            let scales = try file.floats(name + scaleSuffix)
            guard scales.count == 1 || scales.count == e.shape[0], scales.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw CheckpointError(.malformed, "\(file.path): \(name)\(scaleSuffix) has \(scales.count) values; expected 1 or \(e.shape[0]) positive scales")
            }
            values.withUnsafeBufferPointer { quantized.add(e, values: UnsafeBufferPointer(rebasing: $0[0..<e.count]), scales: scales) }
        }
        quantized.dequantize(into: model.parameters.pointer)
        model.quantized = quantized
        return model
    }
}
