import Foundation

/// A task file for `zerotrain eval`: JSONL, one object per line with a string `prompt` and its
/// answer, `reference` (a string) or `references` (a non-empty array of strings). Blank lines
/// are skipped; anything else missing or of the wrong type is an error naming the line.
public struct ReferenceFile: Sendable {
    public struct Pair: Sendable, Equatable {
        public var prompt: String
        public var references: [String]
    }

    public let pairs: [Pair]

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EvaluationError(.badInput, "cannot read the reference file \(path)")
        }
        try self.init(text: String(decoding: data, as: UTF8.self), source: path)
    }

    public init(text: String, source: String) throws {
        var pairs: [Pair] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let at = "\(source):\(n + 1)"
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw EvaluationError(.badInput, "\(at): not a JSON object")
            }
            guard let prompt = object["prompt"] as? String else {
                throw EvaluationError(.badInput, "\(at): no string field \"prompt\"")
            }
            let references: [String]
            if let one = object["reference"] as? String {
                references = [one]
            } else if let many = object["references"] as? [String], !many.isEmpty {
                references = many
            } else {
                throw EvaluationError(.badInput, "\(at): no field \"reference\" (a string) or \"references\" (a non-empty array of strings)")
            }
            pairs.append(Pair(prompt: prompt, references: references))
        }
        guard !pairs.isEmpty else { throw EvaluationError(.badInput, "\(source): no prompt/reference pairs") }
        self.pairs = pairs
    }
}

/// The task metrics of predictions against references: SQuAD exact match and F1 (0…100) and
/// corpus BLEU.
public struct TaskScores: Sendable, Equatable {
    public var count: Int
    public var exactMatch: Double
    public var f1: Double
    public var bleu: CorpusBLEU.Score

    public init(predictions: [String], references: [[String]], bleu: CorpusBLEU = CorpusBLEU()) {
        precondition(predictions.count == references.count && !predictions.isEmpty, "one reference list per prediction")
        count = predictions.count
        var em = 0.0, f = 0.0
        for (p, r) in zip(predictions, references) {
            em += SQuADMetrics.exactMatch(prediction: p, references: r)
            f += SQuADMetrics.f1(prediction: p, references: r)
        }
        exactMatch = 100 * em / Double(count)
        f1 = 100 * f / Double(count)
        self.bleu = bleu.score(hypotheses: predictions, references: references)
    }
}
