import Foundation
import Tensor

/// How a request samples its tokens (the OpenAI / transformers parameters).
public struct SamplingParameters: Sendable, Equatable {
    /// 0 = greedy (argmax); otherwise logits are divided by it before the softmax.
    public var temperature: Double = 0
    /// Keep the k most likely tokens (0 = all).
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probability reaches p (1 = all).
    public var topP: Double = 1
    /// transformers' repetition penalty: the logit of a token already in the context is divided
    /// by it when positive, multiplied when negative (1 = off).
    public var repetitionPenalty: Double = 1
    /// Seed of the request's random stream (token i draws Philox(seed) element i of stream 0).
    public var seed: UInt64 = 0

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, repetitionPenalty: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    /// Nil when valid, else what is wrong (for a 400 or a CLI error).
    public var problem: String? {
        if !(temperature >= 0) || !temperature.isFinite { return "temperature must be ≥ 0, got \(temperature)" }
        if topK < 0 { return "top_k must be ≥ 0, got \(topK)" }
        if !(topP > 0 && topP <= 1) { return "top_p must be in (0, 1], got \(topP)" }
        if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite { return "repetition_penalty must be > 0, got \(repetitionPenalty)" }
        return nil
    }
}

/// Picks the next token from logits: repetition penalty, then greedy or temperature → top-k →
/// top-p → a draw, in transformers' order. Token i of a sequence uses uniform number i of the
/// seed's stream, so a request gives the same tokens however it is batched.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private let rng: Philox
    private var drawn: UInt64 = 0

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = Philox(seed: parameters.seed)
    }

    /// The next token after `context` (the prompt and the tokens generated so far).
    public mutating func next(logits: [Float], context: [Int32]) -> Int32 {
        var logits = logits
        let p = parameters
        if p.repetitionPenalty != 1 {
            let penalty = Float(p.repetitionPenalty)
            for t in Set(context) where t >= 0 && Int(t) < logits.count {
                let i = Int(t)
                logits[i] = logits[i] > 0 ? logits[i] / penalty : logits[i] * penalty
            }
        }
        let index = drawn
        drawn += 1
        if p.temperature <= 0 { return Int32(logits.indices.max { logits[$0] < logits[$1] }!) }
        let u = rng.uniformDouble(index: index, stream: 0)
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] }
        if p.topK > 0 && p.topK < order.count { order = Array(order.prefix(p.topK)) }
        let m = Double(logits[order[0]])
        var weights = order.map { exp((Double(logits[$0]) - m) / p.temperature) }
        if p.topP < 1 {
            let total = weights.reduce(0, +)
            var acc = 0.0, keep = 0
            while keep < weights.count {
                acc += weights[keep] / total
                keep += 1
                if acc >= p.topP { break }
            }
            order = Array(order.prefix(keep))
            weights = Array(weights.prefix(keep))
        }
        let total = weights.reduce(0, +)
        var acc = 0.0
        for (j, w) in weights.enumerated() {
            acc += w / total
            if u < acc { return Int32(order[j]) }
        }
        return Int32(order.last!)
    }
}
