import Foundation

/// Corpus BLEU as sacreBLEU computes it (`sacrebleu.corpus_bleu` / `BLEU().corpus_score`, version 2):
/// n-gram matches up to order 4 are clipped by the largest count in any one reference and summed
/// over the corpus; the reference length of a segment is the one closest to the hypothesis
/// (the shorter on a tie); brevity penalty exp(1 − r/c) when c < r; the score is 100 · BP ·
/// exp(mean log precision), with the chosen smoothing. Tokenisation `13a` by default.
public struct CorpusBLEU: Sendable {
    /// sacreBLEU's smoothing methods (Chen and Cherry, 2014).
    public enum Smoothing: Sendable, Equatable {
        /// Precision 0 of an order stays 0 (the score is then 0).
        case none
        /// Method 1: a zero count becomes `epsilon` (sacreBLEU's default 0.1).
        case floor(Double)
        /// Method 2: k added to the matches and totals of orders 2 and up (default 1).
        case addK(Double)
        /// Method 3, mteval-v13a's (sacreBLEU's default): the k-th order without matches counts 1/2^k.
        case exp

        /// A method by sacreBLEU's name (`none`, `floor`, `add-k`, `exp`), its value or the default.
        public init(name: String, value: Double? = nil) throws {
            switch name {
            case "none": self = .none
            case "floor": self = .floor(value ?? 0.1)
            case "add-k": self = .addK(value ?? 1)
            case "exp": self = .exp
            default: throw EvaluationError(.badInput, "unknown BLEU smoothing \"\(name)\": use exp, floor, add-k or none")
            }
        }
    }

    /// The corpus's sufficient statistics: system and reference lengths, and per order the
    /// clipped matches and the hypothesis n-grams.
    public struct Statistics: Sendable, Equatable {
        public var hypothesisLength = 0
        public var referenceLength = 0
        public var matches: [Int]
        public var totals: [Int]
        public init(order: Int) {
            matches = Array(repeating: 0, count: order)
            totals = Array(repeating: 0, count: order)
        }
    }

    /// The result, with the parts sacreBLEU reports.
    public struct Score: Sendable, Equatable {
        /// 0…100.
        public var score: Double
        /// Per order, 0…100.
        public var precisions: [Double]
        public var brevityPenalty: Double
        public var statistics: Statistics
    }

    public var smoothing: Smoothing
    public var lowercase: Bool
    /// Tokenise with 13a (true) or split on whitespace only (sacreBLEU's `tokenize='none'`).
    public var tokenize: Bool
    public var maxOrder: Int
    /// Stop at the highest order with any hypothesis n-gram (sacreBLEU's `effective_order`).
    public var effectiveOrder: Bool

    public init(smoothing: Smoothing = .exp, lowercase: Bool = false, tokenize: Bool = true, maxOrder: Int = 4, effectiveOrder: Bool = false) {
        self.smoothing = smoothing
        self.lowercase = lowercase
        self.tokenize = tokenize
        self.maxOrder = maxOrder
        self.effectiveOrder = effectiveOrder
    }

    /// `hypotheses[i]` against its references `references[i]` (one or more each).
    public func score(hypotheses: [String], references: [[String]]) -> Score {
        precondition(hypotheses.count == references.count, "one reference list per hypothesis")
        var stats = Statistics(order: maxOrder)
        let tokenizer = Tokenizer13a()
        func words(_ s: String) -> [Substring] {
            let t = lowercase ? s.lowercased() : s
            let tokenized = tokenize ? tokenizer(t) : t
            return tokenized.split(whereSeparator: \.isWhitespace)
        }
        for (hypothesis, refs) in zip(hypotheses, references) {
            let h = words(hypothesis)
            var best: [[Substring]: Int] = [:]
            var lengths: [Int] = []
            for r in refs {
                let w = words(r)
                lengths.append(w.count)
                for (gram, count) in ngrams(w) { best[gram] = max(best[gram] ?? 0, count) }
            }
            stats.hypothesisLength += h.count
            stats.referenceLength += Self.closest(h.count, lengths)
            for (gram, count) in ngrams(h) {
                stats.totals[gram.count - 1] += count
                stats.matches[gram.count - 1] += min(count, best[gram] ?? 0)
            }
        }
        return score(stats)
    }

    private func ngrams(_ w: [Substring]) -> [[Substring]: Int] {
        var counts: [[Substring]: Int] = [:]
        for n in 1...maxOrder where w.count >= n {
            for i in 0...(w.count - n) { counts[Array(w[i..<(i + n)]), default: 0] += 1 }
        }
        return counts
    }

    /// The reference length closest to `length`, the shorter on a tie.
    static func closest(_ length: Int, _ lengths: [Int]) -> Int {
        lengths.min { (abs($0 - length), $0) < (abs($1 - length), $1) } ?? 0
    }

    /// The score of corpus statistics.
    public func score(_ stats: Statistics) -> Score {
        let c = stats.hypothesisLength, r = stats.referenceLength
        let bp = c < r ? (c > 0 ? Foundation.exp(1 - Double(r) / Double(c)) : 0) : 1
        var precisions = Array(repeating: 0.0, count: maxOrder)
        guard stats.matches.contains(where: { $0 > 0 }) else {
            return Score(score: 0, precisions: precisions, brevityPenalty: bp, statistics: stats)
        }
        var matches = stats.matches.map(Double.init), totals = stats.totals.map(Double.init)
        var mteval = 1.0
        var order = maxOrder
        for n in 0..<maxOrder {
            if case .addK(let k) = smoothing, n > 0 {
                matches[n] += k
                totals[n] += k
            }
            if totals[n] == 0 { break }
            if effectiveOrder { order = n + 1 }
            if matches[n] == 0 {
                switch smoothing {
                case .exp:
                    mteval *= 2
                    precisions[n] = 100 / (mteval * totals[n])
                case .floor(let epsilon):
                    precisions[n] = 100 * epsilon / totals[n]
                case .none, .addK:
                    break
                }
            } else {
                precisions[n] = 100 * matches[n] / totals[n]
            }
        }
        // sacreBLEU's floored logarithm: log 0 counts as −9 999 999 999.
        let logSum = precisions.prefix(order).reduce(0.0) { $0 + ($1 == 0 ? -9_999_999_999 : log($1)) }
        return Score(score: bp * Foundation.exp(logSum / Double(order)), precisions: precisions, brevityPenalty: bp, statistics: stats)
    }
}
