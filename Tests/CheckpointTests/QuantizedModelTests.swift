import Checkpoint
import Foundation
import Model
import Tensor
import Testing

/// The int8 folder format: a write/load round trip keeps the int8 weights, scales and logits, and
/// malformed scales or a folder without quantization_config are refused with an error.
@Suite struct QuantizedModelTests {
    static func model(tied: Bool) throws -> Transformer {
        var c = ModelConfig()
        c.numLayers = 1
        c.hiddenSize = 16
        c.numAttentionHeads = 2
        c.vocabSize = 32
        c.maxSeqLen = 8
        c.tieEmbeddings = tied
        let m = try Transformer(config: c, pool: ThreadPool(threads: 1), precision: .int8)
        m.initializeParameters(seed: 3)
        return m
    }

    static func folder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("zt-quantized-\(UUID().uuidString)")
    }

    @Test(arguments: [false, true])
    func roundTripKeepsWeightsAndLogits(tied: Bool) throws {
        let m = try Self.model(tied: tied)
        m.quantize(perChannel: true)
        let dir = Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try QuantizedModel.write(m, to: dir)
        let loaded = try QuantizedModel.load(dir, pool: ThreadPool(threads: 1))
        #expect(loaded.quantized!.weights.count == m.quantized!.weights.count)
        for w in m.quantized!.weights {
            let l = try #require(loaded.quantized!.weight(named: w.entry.name))
            #expect(Array(l.values) == Array(w.values) && Array(l.scales) == Array(w.scales))
        }
        let tokens: [Int32] = [1, 5, 9, 30, 2, 7]
        try m.forward(inputs: tokens, targets: nil, batch: 1, seqLen: 6)
        try loaded.forward(inputs: tokens, targets: nil, batch: 1, seqLen: 6)
        #expect(Array(m.logits) == Array(loaded.logits))
        // The embedding stays exact; the linear weights' fp32 copies are the dequantized values.
        let e = loaded.table.entry(.embedding)!
        #expect(Array(loaded.parameters.slice(e.offset, e.count)) == Array(m.parameters.slice(e.offset, e.count)))
    }

    @Test func refusesMalformedScalesAndPlainFolders() throws {
        let m = try Self.model(tied: false)
        m.quantize(perChannel: false)
        let dir = Self.folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        try QuantizedModel.write(m, to: dir)
        // A zero scale.
        let file = try SafeTensorsFile(contentsOf: dir.appendingPathComponent(QuantizedModel.weightsFile))
        var writer = SafeTensorsWriter()
        for name in file.names {
            let e = file.entry(name)!
            if e.dtype == .i8 {
                var v = [Int8](repeating: 0, count: e.count)
                try v.withUnsafeMutableBufferPointer { try file.read(name, into: $0) }
                v.withUnsafeBufferPointer { writer.add(name, shape: e.shape, int8s: $0) }
            } else {
                let values = try file.floats(name)
                writer.add(name, shape: e.shape, floats: name.hasSuffix("q_proj.weight_scale") ? values.map { _ in 0 } : values)
            }
        }
        try writer.write(to: dir.appendingPathComponent(QuantizedModel.weightsFile))
        #expect(throws: CheckpointError.self) { try QuantizedModel.load(dir, pool: ThreadPool(threads: 1)) }
        // A plain Hugging Face folder is not a quantized one.
        let plain = Self.folder()
        defer { try? FileManager.default.removeItem(at: plain) }
        let fp32 = try Transformer(config: m.config, pool: ThreadPool(threads: 1))
        try CheckpointStore.exportHuggingFace(fp32, to: plain)
        #expect(!QuantizedModel.isQuantized(plain))
        #expect(throws: CheckpointError.self) { try QuantizedModel.load(plain, pool: ThreadPool(threads: 1)) }
    }
}
