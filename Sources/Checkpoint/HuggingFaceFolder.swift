import Foundation
import Model
import Tensor

/// The weights of a Hugging Face model folder, as transformers saves them: one
/// `model.safetensors`, or `model.safetensors.index.json` and the shard files its `weight_map`
/// names (`model-00001-of-00003.safetensors` …). Like transformers, a folder with both uses
/// `model.safetensors`. Files are memory-mapped when a tensor in them is first read, one at a
/// time, so reading part of a model touches only the files that hold it. F32, BF16, F16 and F64
/// tensors are read as Float.
public final class HuggingFaceFolder {
    public let folder: URL
    /// Tensor name → file name, from the index; nil for a single `model.safetensors`.
    public let weightMap: [String: String]?
    private var open: (name: String, file: SafeTensorsFile)?

    public init(_ folder: URL) throws {
        self.folder = folder
        let fm = FileManager.default
        let single = folder.appendingPathComponent(CheckpointStore.modelFile)
        let index = folder.appendingPathComponent(CheckpointStore.modelIndexFile)
        if fm.fileExists(atPath: single.path) || !fm.fileExists(atPath: index.path) {
            weightMap = nil
            _ = try file(named: CheckpointStore.modelFile)   // a missing model.safetensors is reported here, by name
            return
        }
        let data = try CheckpointStore.readData(index)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = object["weight_map"] as? [String: Any] else {
            throw CheckpointError(.malformed, "\(index.path): not a safetensors index (expected {\"weight_map\": {tensor: file}})")
        }
        var weightMap: [String: String] = [:]
        for (tensor, value) in map {
            guard let file = value as? String, !file.isEmpty, !file.contains("/"), file != "..", file != "." else {
                throw CheckpointError(.malformed, "\(index.path): weight_map.\(tensor) must be a file name in the folder, got \(value)")
            }
            weightMap[tensor] = file
        }
        self.weightMap = weightMap
    }

    /// The file that holds tensor `name`.
    public func fileName(of name: String) throws -> String {
        guard let map = weightMap else { return CheckpointStore.modelFile }
        guard let file = map[name] else {
            throw CheckpointError(.missingTensor, "\(folder.appendingPathComponent(CheckpointStore.modelIndexFile).path): tensor \(name) is not in weight_map")
        }
        return file
    }

    /// Reads tensor `entry` (its shape must match) into `dst` (`entry.count` elements).
    public func read(_ entry: ParameterEntry, into dst: UnsafeMutablePointer<Float>) throws {
        try file(named: fileName(of: entry.name)).read(entry.name, into: UnsafeMutableBufferPointer(start: dst, count: entry.count),
                                                       shape: entry.shape)
    }

    /// Elements `elements` of the flat parameter buffer in `table`'s layout, into `out[0…]`:
    /// only the tensors that overlap the range are read (a partly covered one through a buffer of its size).
    public func read(table: ParameterTable, elements: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        precondition(elements.lowerBound >= 0 && elements.upperBound <= table.count, "elements out of the table")
        var scratch: FloatBuffer?
        // Grouped by file so that each file is mapped once, whatever the index's order.
        let needed = table.entries.filter { $0.offset < elements.upperBound && $0.offset + $0.count > elements.lowerBound }
        var order: [String] = [], byFile: [String: [ParameterEntry]] = [:]
        for e in needed {
            let f = try fileName(of: e.name)
            if byFile[f] == nil { order.append(f) }
            byFile[f, default: []].append(e)
        }
        for f in order {
            for e in byFile[f]! {
                let range = e.offset..<(e.offset + e.count)
                if elements.lowerBound <= range.lowerBound && range.upperBound <= elements.upperBound {
                    try read(e, into: out + (e.offset - elements.lowerBound))
                } else {
                    if (scratch?.count ?? -1) < e.count { scratch = FloatBuffer(count: e.count) }
                    try read(e, into: scratch!.pointer)
                    let part = range.clamped(to: elements)
                    (out + (part.lowerBound - elements.lowerBound)).update(from: scratch!.pointer + (part.lowerBound - e.offset), count: part.count)
                }
            }
        }
    }

    private func file(named name: String) throws -> SafeTensorsFile {
        if let open, open.name == name { return open.file }
        open = nil   // unmap the previous file before mapping the next
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent(name))
        open = (name, file)
        return file
    }
}
