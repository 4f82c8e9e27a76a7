import Foundation
import Model
import Tensor

/// Element type of exported weights.
public enum ExportDType: String, Sendable, CaseIterable {
    case f32, bf16

    public var safeTensors: SafeTensorsDType { self == .f32 ? .f32 : .bf16 }
    /// As config.json's `torch_dtype` names it.
    public var torchName: String { self == .f32 ? "float32" : "bfloat16" }
}

/// Writes a Hugging Face model folder from any source of tensors, one tensor at a time, so that
/// models larger than memory export (docs/checkpoint-format.md, "Export to Hugging Face").
public enum HuggingFaceExport {
    /// Writes a Hugging Face model folder: config.json (llama / mistral with sliding_window / mixtral naming, from
    /// ModelConfig.huggingFaceJSON) and the weights, tensor by tensor in the table's order, each fetched through `read`
    /// (entry, destination of entry.count floats) so that no more than one tensor (plus one write buffer) is in memory.
    /// One `model.safetensors` when the total fits in `maxShardBytes`, else `model-00001-of-0000K.safetensors` … plus
    /// `model.safetensors.index.json` ({"metadata": {"total_size": bytes}, "weight_map": {name: file}}), as transformers
    /// writes them. A tensor larger than maxShardBytes gets a file of its own. Returns the files written.
    ///
    /// Every file is written under a temporary name; the shards are renamed once all are complete,
    /// then the index and config.json are written. Weight files of an earlier export in `folder` that this one
    /// does not replace (a `model.safetensors` that would shadow the index, surplus shards) are removed.
    public static func write(model: ModelConfig, table: ParameterTable, to folder: URL, dtype: ExportDType, maxShardBytes: Int,
                             read: (ParameterEntry, UnsafeMutablePointer<Float>) throws -> Void) throws -> [URL] {
        precondition(maxShardBytes > 0, "maxShardBytes must be positive")
        guard model.isHuggingFaceCompatible else {
            throw CheckpointError(.incompatible, "this model cannot be exported to Hugging Face: transformers has no architecture for "
                                  + "norm \(model.norm), activation \(model.activation), \(model.moeConfig?.numSharedExperts ?? 0) shared experts "
                                  + "(llama/mistral/mixtral need rmsnorm, swiglu and no shared experts)")
        }
        let shards = shardPlan(table: table, dtype: dtype, maxShardBytes: maxShardBytes)
        let names = fileNames(shards: shards.count)
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, "cannot create \(folder.path)", cause: error)
        }
        let largest = table.entries.map(\.count).max() ?? 0
        let tensor = FloatBuffer(count: largest)
        var weightMap: [String: String] = [:]
        // All shards are complete under temporary names before any is renamed: a failed export
        // leaves the folder as it was (the writers remove their temporary files).
        var writers: [SafeTensorsStreamWriter] = []
        for (entries, name) in zip(shards, names) {
            let writer = try SafeTensorsStreamWriter(
                to: folder.appendingPathComponent(name),
                tensors: entries.map { SafeTensorsStreamWriter.Tensor(name: $0.name, dtype: dtype.safeTensors, shape: $0.shape) })
            for e in entries {
                try read(e, tensor.pointer)
                try writer.append(UnsafeBufferPointer(start: tensor.pointer, count: e.count))
                weightMap[e.name] = name
            }
            try writer.complete()
            writers.append(writer)
        }
        for w in writers { try w.commit() }
        var written = writers.map(\.url)
        do {
            if shards.count > 1 {
                let index: [String: Any] = ["metadata": ["total_size": totalBytes(table: table, dtype: dtype)], "weight_map": weightMap]
                let url = folder.appendingPathComponent(CheckpointStore.modelIndexFile)
                var data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
                data.append(0x0A)
                try data.write(to: url, options: .atomic)
                written.append(url)
            }
            try removeStaleWeights(in: folder, keeping: Set(written.map(\.lastPathComponent)))
            let config = folder.appendingPathComponent(CheckpointStore.huggingFaceConfigFile)
            try model.huggingFaceJSON(torchDType: dtype.torchName).write(to: config, options: .atomic)
            written.append(config)
        } catch let e as CheckpointError {
            throw e
        } catch {
            throw CheckpointError(.io, "cannot write \(folder.path)", cause: error)
        }
        return written
    }

    /// Which tensors go into which file, in the table's order: a file is closed when the next
    /// tensor would take it past `maxShardBytes`; a tensor larger than that gets a file of its own.
    public static func shardPlan(table: ParameterTable, dtype: ExportDType, maxShardBytes: Int) -> [[ParameterEntry]] {
        var shards: [[ParameterEntry]] = [], current: [ParameterEntry] = [], size = 0
        for e in table.entries {
            let bytes = e.count * dtype.safeTensors.byteSize
            if !current.isEmpty && (size + bytes > maxShardBytes || bytes > maxShardBytes) {
                shards.append(current)
                current = []
                size = 0
            }
            current.append(e)
            size += bytes
            if bytes > maxShardBytes {
                shards.append(current)
                current = []
                size = 0
            }
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }
        return shards
    }

    /// Sum of the tensors' data bytes (the index's `total_size`).
    public static func totalBytes(table: ParameterTable, dtype: ExportDType) -> Int { table.count * dtype.safeTensors.byteSize }

    /// `model.safetensors` for one file, else `model-00001-of-0000K.safetensors` … as transformers names them.
    public static func fileNames(shards: Int) -> [String] {
        shards == 1 ? [CheckpointStore.modelFile]
            : (1...shards).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards) }
    }

    /// A size as `--max-shard-size` takes it: bytes ("1000000"), or a number with a unit — decimal
    /// KB/MB/GB/TB (10^3…) or binary KiB/MiB/GiB/TiB (2^10…), case-insensitive, as in transformers
    /// ("5GB" = 5·10^9). Nil unless it is a positive whole number of bytes.
    public static func byteCount(_ text: String) -> Int? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("kib", 1024), ("mib", 1_048_576), ("gib", 1_073_741_824), ("tib", 1_099_511_627_776),
                                         ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("tb", 1e12), ("b", 1)]
        var number = s, scale = 1.0
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            number = String(s.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            scale = factor
            break
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(number) else { return nil }
        let bytes = value * scale
        guard bytes >= 1, bytes < 9e18, bytes == bytes.rounded() else { return nil }
        return Int(bytes)
    }

    /// Removes the weight files in `folder` (model.safetensors, its index, model-NNNNN-of-NNNNN.safetensors)
    /// that are not in `keeping`: left from an earlier export, they would shadow or confuse this one.
    private static func removeStaleWeights(in folder: URL, keeping: Set<String>) throws {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
        for name in names where !keeping.contains(name) && isWeightFile(name) {
            try fm.removeItem(at: folder.appendingPathComponent(name))
        }
    }

    static func isWeightFile(_ name: String) -> Bool {
        if name == CheckpointStore.modelFile || name == CheckpointStore.modelIndexFile { return true }
        // model-00001-of-00003.safetensors
        let parts = name.split(separator: "-")
        guard parts.count == 4, parts[0] == "model", parts[2] == "of", parts[3].hasSuffix(".safetensors") else { return false }
        let last = parts[3].dropLast(".safetensors".count)
        return !parts[1].isEmpty && parts[1].allSatisfy(\.isNumber) && !last.isEmpty && last.allSatisfy(\.isNumber)
    }
}
