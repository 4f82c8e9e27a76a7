import Tensor

/// A model's linear weights in int8 for dynamic quantization (`Precision.int8`): per weight, its
/// int8 values [out, in] and its scales (symmetric, zero point 0), one per tensor or one per output
/// channel, as PyTorch's `quantize_dynamic` makes them (`Quantization.quantizeWeights`).
///
/// Quantized: every linear layer `quantize_dynamic` would convert — q/k/v/o, the MLP, the experts
/// and shared experts, and the LM head (with tied embeddings, the head's int8 copy of the
/// embedding; the embedding lookup stays fp32). The MoE router stays fp32, as in mixed precision:
/// its top-k choice is discrete and one flipped expert costs more than the product saves.
public final class QuantizedWeights {
    /// One quantized weight, keyed by the parameter entry it replaces.
    public struct Weight {
        public let entry: ParameterEntry
        /// entry.count int8 values, [out, in] row-major (owned by the store).
        public let values: UnsafeMutableBufferPointer<Int8>
        /// 1 (per tensor) or shape[0] (per output channel) scales (owned by the store).
        public let scales: UnsafeMutableBufferPointer<Float>
    }

    public let perChannel: Bool
    public private(set) var weights: [Weight] = []
    private var index: [String: Int] = [:]
    private var byOffset: [Int: Int] = [:]

    /// The entries `quantize_dynamic` converts: every linear weight but the router; with tied
    /// embeddings, the embedding (as the LM head).
    public static func quantizedEntries(_ table: ParameterTable, config: ModelConfig) -> [ParameterEntry] {
        table.entries.filter { e in
            switch e.kind {
            case .qProj, .kProj, .vProj, .oProj, .mlpGate, .mlpUp, .mlpDown, .expertGate, .expertUp, .expertDown,
                 .sharedGate, .sharedUp, .sharedDown, .lmHead: true
            case .embedding: config.tieEmbeddings
            default: false
            }
        }
    }

    /// Empty; `add` fills it (loading a quantized model).
    public init(perChannel: Bool) {
        self.perChannel = perChannel
    }

    /// Quantizes the fp32 weights of `table` in `parameters` (the whole flat buffer).
    public convenience init(config: ModelConfig, table: ParameterTable, parameters: UnsafePointer<Float>, perChannel: Bool) {
        self.init(perChannel: perChannel)
        for e in Self.quantizedEntries(table, config: config) {
            let values = UnsafeMutableBufferPointer<Int8>.allocate(capacity: e.count)
            let scales = Quantization.quantizeWeights(parameters + e.offset, rows: e.shape[0], cols: e.shape[1],
                                                      perChannel: perChannel, into: values.baseAddress!)
            append(Weight(entry: e, values: values, scales: Self.owned(scales)))
        }
    }

    deinit {
        for w in weights {
            w.values.deallocate()
            w.scales.deallocate()
        }
    }

    private static func owned(_ scales: [Float]) -> UnsafeMutableBufferPointer<Float> {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: scales.count)
        _ = buffer.initialize(from: scales)
        return buffer
    }

    /// Adds one weight: `values` (entry.count int8 values, copied) and its scales (1 or shape[0]).
    public func add(_ entry: ParameterEntry, values: UnsafeBufferPointer<Int8>, scales: [Float]) {
        precondition(values.count == entry.count && (scales.count == 1 || scales.count == entry.shape[0]),
                     "quantized \(entry.name): \(values.count) values and \(scales.count) scales for shape \(entry.shape)")
        let copy = UnsafeMutableBufferPointer<Int8>.allocate(capacity: entry.count)
        _ = copy.initialize(from: values)
        append(Weight(entry: entry, values: copy, scales: Self.owned(scales)))
    }

    private func append(_ w: Weight) {
        precondition(index[w.entry.name] == nil, "\(w.entry.name) quantized twice")
        index[w.entry.name] = weights.count
        byOffset[w.entry.offset] = weights.count
        weights.append(w)
    }

    public func weight(named name: String) -> Weight? { index[name].map { weights[$0] } }

    /// The operands of the weight at `offset` in the flat buffer for `Linear.forward`; nil if it is not quantized.
    func operands(offset: Int, scratch: Int8Scratch) -> Int8Operands? {
        guard let i = byOffset[offset] else { return nil }
        let w = weights[i]
        return Int8Operands(weight: UnsafePointer(w.values.baseAddress!), scales: UnsafePointer(w.scales.baseAddress!),
                            perChannel: w.scales.count > 1, scratch: scratch)
    }

    /// Dequantized values (scale · q) of every quantized linear weight, written over their entries
    /// in `parameters` (a loaded int8 model keeps fp32 copies for every path that reads them). The
    /// embedding — quantized only as the tied head's copy — keeps its exact values.
    public func dequantize(into parameters: UnsafeMutablePointer<Float>) {
        for w in weights where w.entry.kind != .embedding {
            let cols = w.entry.shape[1]
            for r in 0..<w.entry.shape[0] {
                let s = w.scales.count > 1 ? w.scales[r] : w.scales[0]
                for c in 0..<cols { parameters[w.entry.offset + r * cols + c] = s * Float(w.values[r * cols + c]) }
            }
        }
    }

    /// Bytes of the int8 values and their fp32 scales.
    public var bytes: Int { weights.reduce(0) { $0 + $1.entry.count + 4 * $1.scales.count } }
}
