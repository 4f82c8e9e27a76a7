import Foundation

/// Exact match and token-level F1 as the SQuAD v1.1 evaluation script defines them: both
/// compare answers after `normalize` (lower case, ASCII punctuation removed, the articles a, an,
/// the removed as whole words, whitespace collapsed); F1 is the harmonic mean of precision and
/// recall of the bag of normalised tokens; with several references a prediction takes its best
/// score over them; the corpus figures are means × 100.
public enum SQuADMetrics {
    private static let punctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    private static let articles = try! NSRegularExpression(pattern: #"\b(a|an|the)\b"#)

    public static func normalize(_ s: String) -> String {
        let lower = s.lowercased()
        let noPunctuation = String(lower.filter { !punctuation.contains($0) })
        let noArticles = articles.stringByReplacingMatches(in: noPunctuation, range: NSRange(noPunctuation.startIndex..., in: noPunctuation),
                                                           withTemplate: " ")
        return noArticles.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// 1 when the normalised prediction equals a normalised reference, else 0.
    public static func exactMatch(prediction: String, references: [String]) -> Double {
        let p = normalize(prediction)
        return references.contains { normalize($0) == p } ? 1 : 0
    }

    /// The best token F1 (0…1) of the prediction over the references.
    public static func f1(prediction: String, references: [String]) -> Double {
        references.map { f1(prediction: prediction, reference: $0) }.max() ?? 0
    }

    static func f1(prediction: String, reference: String) -> Double {
        let p = normalize(prediction).split(separator: " "), r = normalize(reference).split(separator: " ")
        var counts: [Substring: Int] = [:]
        for t in r { counts[t, default: 0] += 1 }
        var same = 0
        for t in p where (counts[t] ?? 0) > 0 {
            counts[t]! -= 1
            same += 1
        }
        guard same > 0 else { return 0 }
        let precision = Double(same) / Double(p.count), recall = Double(same) / Double(r.count)
        return 2 * precision * recall / (precision + recall)
    }
}
