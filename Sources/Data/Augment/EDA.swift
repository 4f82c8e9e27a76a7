import Tensor

/// Easy data augmentation (Wei & Zou, 2019) on whitespace-separated words. A word keeps its
/// surrounding punctuation; synonyms are looked up lower-cased without it, and take the word's
/// capital. Every choice comes from Philox(seed) on a stream of (document, operation, copy), so
/// a record's augmentations are the same on every run.
public struct EDA: Sendable {
    public let wordNet: WordNet?
    public let seed: UInt64

    /// Function words EDA leaves alone when replacing (NLTK's most frequent English stop words).
    static let stopWords: Set<String> = [
        "a", "an", "the", "and", "or", "but", "if", "of", "at", "by", "for", "with", "about", "to", "from", "in", "on",
        "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "do", "does", "did", "i", "me", "my",
        "we", "our", "you", "your", "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "what",
        "which", "who", "this", "that", "these", "those", "am", "not", "no", "so", "than", "too", "very", "can", "will",
        "just", "as", "until", "while", "into", "through", "then", "there", "here", "when", "where", "why", "how",
    ]

    public init(wordNet: WordNet?, seed: UInt64) {
        self.wordNet = wordNet
        self.seed = seed
    }

    /// `text` changed by `operation` at `rate`; `stream` names the (document, copy).
    public func apply(_ operation: AugmentOperation, rate: Double, to text: String, stream: UInt64) -> String {
        var words = text.split(whereSeparator: \.isWhitespace).map(String.init)
        guard !words.isEmpty else { return text }
        let rng = Philox(seed: seed)
        var draw: UInt64 = 0
        func below(_ n: Int) -> Int { defer { draw += 1 }; return rng.below(n, index: draw, stream: stream) }
        func uniform() -> Double { defer { draw += 1 }; return rng.uniformDouble(index: draw, stream: stream) }
        let n = max(1, Int(rate * Double(words.count)))
        switch operation {
        case .synonymReplacement:
            var candidates = words.indices.filter { !Self.stopWords.contains(Self.core($0, in: words).lowercased()) && !synonyms(Self.core($0, in: words)).isEmpty }
            var replaced = 0
            while replaced < n, !candidates.isEmpty {
                let i = candidates.remove(at: below(candidates.count))
                let options = synonyms(Self.core(i, in: words))
                words[i] = Self.replacingCore(of: words[i], with: options[below(options.count)])
                replaced += 1
            }
        case .randomInsertion:
            for _ in 0..<n {
                // A random word that has synonyms (up to 10 tries, as EDA does).
                for _ in 0..<10 {
                    let options = synonyms(Self.core(below(words.count), in: words))
                    if options.isEmpty { continue }
                    words.insert(options[below(options.count)], at: below(words.count + 1))
                    break
                }
            }
        case .randomSwap:
            guard words.count >= 2 else { return text }
            for _ in 0..<n {
                let i = below(words.count)
                var j = below(words.count - 1)
                if j >= i { j += 1 }
                words.swapAt(i, j)
            }
        case .randomDeletion:
            guard words.count >= 2 else { return text }
            let kept = words.filter { _ in uniform() >= rate }
            words = kept.isEmpty ? [words[below(words.count)]] : kept
        case .backTranslation:
            preconditionFailure("back-translation is not an EDA operation (see BackTranslator)")
        }
        return words.joined(separator: " ")
    }

    /// Single-word synonyms only, so that a replacement keeps the word count (as in EDA's paper).
    private func synonyms(_ word: String) -> [String] {
        word.isEmpty ? [] : (wordNet?.synonyms(of: word.lowercased()) ?? []).filter { !$0.contains(" ") }
    }

    /// Word i without leading and trailing punctuation.
    static func core(_ i: Int, in words: [String]) -> String {
        String(words[i].drop { !$0.isLetter && !$0.isNumber }.reversed().drop { !$0.isLetter && !$0.isNumber }.reversed())
    }

    static func replacingCore(of word: String, with synonym: String) -> String {
        let lead = word.prefix { !$0.isLetter && !$0.isNumber }
        let trail = String(word.reversed().prefix { !$0.isLetter && !$0.isNumber }.reversed())
        let inner = word.dropFirst(lead.count)
        let capital = inner.first?.isUppercase == true
        let s = capital ? synonym.prefix(1).uppercased() + synonym.dropFirst() : synonym
        return lead + s + trail
    }
}
