import Foundation
import Model
import Tensor

/// Samples a continuation from a model, token by token (the whole context is re-run each
/// token; there is no KV cache yet, so this is for small models and short texts).
public struct TextGenerator {
    public let model: Transformer
    public init(model: Transformer) { self.model = model }

    /// Appends up to `count` sampled tokens to `prompt`, ending early after a token of `stop`.
    /// temperature 0 = greedy; topK 0 = whole vocabulary.
    public func generate(prompt: [Int32], count: Int, temperature: Double, topK: Int, seed: UInt64, stop: Set<Int32> = []) throws -> [Int32] {
        guard !prompt.isEmpty else { throw TrainingError(.badInput, "the prompt is empty") }
        let rng = Philox(seed: seed)
        var tokens = prompt
        let v = model.config.vocabSize
        for i in 0..<count {
            let context = Array(tokens.suffix(model.config.maxSeqLen))
            try model.forward(inputs: context, targets: nil, batch: 1, seqLen: context.count)
            let logits = Array(model.logits[((context.count - 1) * v)..<(context.count * v)])
            let next = Int32(sample(logits, temperature: temperature, topK: topK, u: rng.uniformDouble(index: UInt64(i), stream: 0)))
            tokens.append(next)
            if stop.contains(next) { break }
        }
        return tokens
    }

    func sample(_ logits: [Float], temperature: Double, topK: Int, u: Double) -> Int {
        if temperature <= 0 { return logits.indices.max { logits[$0] < logits[$1] }! }
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] }
        if topK > 0 && topK < order.count { order = Array(order.prefix(topK)) }
        let m = Double(logits[order[0]])
        let weights = order.map { exp((Double(logits[$0]) - m) / temperature) }
        let total = weights.reduce(0, +)
        var acc = 0.0
        for (j, w) in weights.enumerated() {
            acc += w / total
            if u < acc { return order[j] }
        }
        return order.last!
    }
}
