import Foundation

/// Sums of a language model's next-token predictions over held-out tokens: the negative
/// log-likelihood, the tokens whose arg-max prediction was the target, and the tokens. Sums
/// (not means) so that ranks and batches add up exactly; the figures come at the end.
public struct LanguageModelTotals: Sendable, Equatable, Codable {
    /// Σ −log p(target), in nats.
    public var negativeLogLikelihood: Double = 0
    /// Positions whose most likely token (the first on a tie) is the target.
    public var correct: Int = 0
    public var tokens: Int = 0

    enum CodingKeys: String, CodingKey { case negativeLogLikelihood = "negative_log_likelihood", correct, tokens }

    public init() {}
    public init(negativeLogLikelihood: Double, correct: Int, tokens: Int) {
        self.negativeLogLikelihood = negativeLogLikelihood
        self.correct = correct
        self.tokens = tokens
    }

    /// Mean cross-entropy per token (nats).
    public var loss: Double { tokens > 0 ? negativeLogLikelihood / Double(tokens) : .nan }
    /// exp(loss).
    public var perplexity: Double { Foundation.exp(loss) }
    /// Next-token accuracy, 0…1.
    public var accuracy: Double { tokens > 0 ? Double(correct) / Double(tokens) : .nan }

    public static func + (a: Self, b: Self) -> Self {
        Self(negativeLogLikelihood: a.negativeLogLikelihood + b.negativeLogLikelihood, correct: a.correct + b.correct, tokens: a.tokens + b.tokens)
    }

    /// Adds the predictions of `rows` rows of logits (rows, vocab) for `targets`.
    public mutating func add(logits: UnsafeBufferPointer<Float>, targets: ArraySlice<Int32>, vocab v: Int) {
        precondition(logits.count >= targets.count * v, "logits for every target")
        for (n, target) in targets.enumerated() {
            let row = UnsafeBufferPointer(rebasing: logits[(n * v)..<((n + 1) * v)])
            var best = 0
            var m = -Float.infinity
            for j in 0..<v where row[j] > m { m = row[j]; best = j }
            var s = 0.0
            for j in 0..<v { s += Foundation.exp(Double(row[j] - m)) }
            negativeLogLikelihood += Double(m) + Foundation.log(s) - Double(row[Int(target)])
            if best == Int(target) { correct += 1 }
            tokens += 1
        }
    }
}
