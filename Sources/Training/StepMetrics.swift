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

    public var tokensPerSecond: Double { seconds > 0 ? Double(tokens) / seconds : 0 }

    enum CodingKeys: String, CodingKey {
        case step, loss, auxLoss = "aux_loss", lr, gradNorm = "grad_norm", tokens, seconds, tokensPerSecond = "tokens_per_second"
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
        loss = try c.decode(Float.self, forKey: .loss)
        auxLoss = try c.decodeIfPresent(Float.self, forKey: .auxLoss) ?? 0
        lr = try c.decode(Double.self, forKey: .lr)
        gradNorm = try c.decode(Double.self, forKey: .gradNorm)
        tokens = try c.decode(Int.self, forKey: .tokens)
        seconds = try c.decode(Double.self, forKey: .seconds)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(step, forKey: .step)
        try c.encode(loss, forKey: .loss)
        try c.encode(auxLoss, forKey: .auxLoss)
        try c.encode(lr, forKey: .lr)
        try c.encode(gradNorm, forKey: .gradNorm)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
    }

    /// The human log line.
    public func line(totalSteps: Int) -> String {
        var s = "step \(step + 1)/\(totalSteps) | loss \(String(format: "%.4f", loss))"
        if auxLoss != 0 { s += " | aux \(String(format: "%.4f", auxLoss))" }
        s += " | lr \(String(format: "%.3e", lr)) | grad_norm \(String(format: "%.4f", gradNorm))"
        s += " | tok/s \(Int(tokensPerSecond.rounded()))"
        return s
    }
}

import Foundation
