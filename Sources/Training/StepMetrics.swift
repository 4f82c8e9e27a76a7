import Evaluation

/// What one optimizer update reports (stdout, metrics.jsonl).
public struct StepMetrics: Codable, Sendable, Equatable {
    /// 0-based index of the update.
    public var step: Int
    /// Mean cross-entropy over the update's micro-batches.
    public var loss: Float
    /// Mean MoE load-balancing loss (0 for dense models).
    public var auxLoss: Float
    /// Learning rate used by this update.
    public var lr: Double
    /// Global L2 norm of the gradients before clipping.
    public var gradNorm: Double
    /// Tokens processed by this update.
    public var tokens: Int
    /// Wall time of the update in seconds.
    public var seconds: Double
    /// The update was skipped on every rank: the loss or gradient norm was not finite.
    public var skipped = false
    /// fp16: the skip was a gradient overflow under the loss scale (the scale was halved), not a divergence.
    public var overflow = false
    /// fp16: the dynamic loss scale this update's backward used; nil in other precisions.
    public var lossScale: Float?
    /// MoE: the fraction of the job's routed token slots each expert received in the update
    /// (every rank's routing counts summed, all layers and micro-batches; each token takes top_k
    /// slots per layer; sums to 1); nil for dense models.
    public var expertLoad: [Double]?
    /// `telemetry.layer_norms`: the L2 norm of the gradients before clipping of each region of the
    /// flat buffer, in order — the embedding, block 0 … L−1, the head (final norm and LM head) —
    /// over all ranks' shards; their root-sum-of-squares is `gradNorm`. Nil when off.
    public var layerGradNorms: [Double]?
    /// The held-out evaluation after this update (`training.eval_interval`), summed over the
    /// job's ranks; nil when none ran.
    public var validation: LanguageModelTotals?

    public var tokensPerSecond: Double { seconds > 0 ? Double(tokens) / seconds : 0 }

    enum CodingKeys: String, CodingKey {
        case step, loss, auxLoss = "aux_loss", lr, gradNorm = "grad_norm", tokens, seconds, tokensPerSecond = "tokens_per_second", skipped
        case overflow, lossScale = "loss_scale"
        case expertLoad = "expert_load", layerGradNorms = "layer_grad_norms"
        case validationLoss = "validation_loss", validationPerplexity = "validation_perplexity"
        case validationAccuracy = "validation_accuracy", validationTokens = "validation_tokens", validationCorrect = "validation_correct"
    }

    public init(step: Int, loss: Float, auxLoss: Float, lr: Double, gradNorm: Double, tokens: Int, seconds: Double) {
        self.step = step
        self.loss = loss
        self.auxLoss = auxLoss
        self.lr = lr
        self.gradNorm = gradNorm
        self.tokens = tokens
        self.seconds = seconds
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        loss = Float(try Self.decodeNumber(c, .loss))
        auxLoss = try c.decodeIfPresent(Float.self, forKey: .auxLoss) ?? 0
        lr = try c.decode(Double.self, forKey: .lr)
        gradNorm = try Self.decodeNumber(c, .gradNorm)
        tokens = try c.decode(Int.self, forKey: .tokens)
        seconds = try c.decode(Double.self, forKey: .seconds)
        skipped = try c.decodeIfPresent(Bool.self, forKey: .skipped) ?? false
        overflow = try c.decodeIfPresent(Bool.self, forKey: .overflow) ?? false
        lossScale = try c.decodeIfPresent(Float.self, forKey: .lossScale)
        expertLoad = try c.decodeIfPresent([Double].self, forKey: .expertLoad)
        if c.contains(.layerGradNorms) {
            var list = try c.nestedUnkeyedContainer(forKey: .layerGradNorms)
            var norms: [Double] = []
            while !list.isAtEnd {
                if let x = try? list.decode(Double.self) { norms.append(x) } else { norms.append(try Self.number(list.decode(String.self))) }
            }
            layerGradNorms = norms
        }
        if let tokens = try c.decodeIfPresent(Int.self, forKey: .validationTokens) {
            let loss = try Self.decodeNumber(c, .validationLoss)
            validation = LanguageModelTotals(negativeLogLikelihood: loss * Double(tokens),
                                             correct: try c.decode(Int.self, forKey: .validationCorrect), tokens: tokens)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step)
        try Self.encodeNumber(Double(loss), &c, .loss)
        try c.encode(auxLoss, forKey: .auxLoss)
        try c.encode(lr, forKey: .lr)
        try Self.encodeNumber(gradNorm, &c, .gradNorm)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        // Only when true, so the records of applied updates are unchanged.
        if skipped { try c.encode(true, forKey: .skipped) }
        if overflow { try c.encode(true, forKey: .overflow) }
        try c.encodeIfPresent(lossScale, forKey: .lossScale)
        try c.encodeIfPresent(expertLoad, forKey: .expertLoad)
        if let norms = layerGradNorms {
            var list = c.nestedUnkeyedContainer(forKey: .layerGradNorms)
            for x in norms { x.isFinite ? try list.encode(x) : try list.encode(Self.text(x)) }
        }
        if let v = validation {
            try Self.encodeNumber(v.loss, &c, .validationLoss)
            try Self.encodeNumber(v.perplexity, &c, .validationPerplexity)
            try c.encode(v.accuracy, forKey: .validationAccuracy)
            try c.encode(v.tokens, forKey: .validationTokens)
            try c.encode(v.correct, forKey: .validationCorrect)
        }
    }

    /// A skipped update's loss or norm is NaN or infinite, which JSON has no number for: it is
    /// written as the string "NaN", "Infinity" or "-Infinity" (JSONEncoder's convertToString names).
    private static func encodeNumber(_ x: Double, _ c: inout KeyedEncodingContainer<CodingKeys>, _ key: CodingKeys) throws {
        if x.isFinite {
            key == .loss ? try c.encode(Float(x), forKey: key) : try c.encode(x, forKey: key)
        } else {
            try c.encode(text(x), forKey: key)
        }
    }

    private static func text(_ x: Double) -> String { x.isNaN ? "NaN" : x > 0 ? "Infinity" : "-Infinity" }

    private static func number(_ text: String) throws -> Double {
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not a number: \(text)"))
        }
    }

    private static func decodeNumber(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Double {
        if let text = try? c.decode(String.self, forKey: key) { return try number(text) }
        return key == .loss ? Double(try c.decode(Float.self, forKey: key)) : try c.decode(Double.self, forKey: key)
    }

    /// "val_loss … | val_ppl … | val_acc …".
    public static func validationLine(_ v: LanguageModelTotals) -> String {
        "val_loss \(String(format: "%.4f", v.loss)) | val_ppl \(String(format: "%.3f", v.perplexity)) | val_acc \(String(format: "%.4f", v.accuracy))"
    }

    /// The human log line.
    public func line(totalSteps: Int) -> String {
        var s = "step \(step + 1)/\(totalSteps) | loss \(String(format: "%.4f", loss))"
        if overflow, let lossScale {
            return s + " | skipped (fp16 gradient overflow at loss scale \(lossScale), halved)"
        }
        if skipped {
            return s + " | grad_norm \(String(format: "%.4f", gradNorm)) | skipped (non-finite loss/gradients)"
        }
        if auxLoss != 0 { s += " | aux \(String(format: "%.4f", auxLoss))" }
        s += " | lr \(String(format: "%.3e", lr)) | grad_norm \(String(format: "%.4f", gradNorm))"
        if let lossScale { s += " | loss_scale \(lossScale)" }
        s += " | tok/s \(Int(tokensPerSecond.rounded()))"
        if let v = validation { s += " | " + Self.validationLine(v) }
        return s
    }
}

import Foundation
