import Tensor

/// Generated documents with planted duplicates, for tests and benchmarks: English-like prose from
/// a vocabulary of syllable words (stop words mixed in, so the Gopher and C4 rules pass), where
/// some documents are exact copies and some near copies (a few words replaced, inserted or
/// deleted). Deterministic for a seed.
public struct SyntheticCorpus: Sendable {
    public struct Item: Sendable {
        public var text: String
        /// For a planted duplicate: the index of the original it copies.
        public var copyOf: Int?
        /// True for an exact copy, false for an edited one.
        public var exact: Bool
    }

    public let seed: UInt64
    public let vocabulary: [String]

    public init(seed: UInt64 = 7, vocabularySize: Int = 20_000) {
        self.seed = seed
        let rng = Philox(seed: seed)
        let syllables = ["ka", "lo", "mi", "ten", "ra", "sol", "ve", "dor", "an", "pri", "qua", "ber", "nu", "tis", "gel", "om",
                         "fa", "rin", "cho", "da", "lex", "mon", "pe", "str", "ul", "vy", "zan", "ho", "ist", "ca"]
        var words: [String] = []
        var seen = Set<String>()
        var i: UInt64 = 0
        while words.count < vocabularySize {
            let n = 1 + rng.below(3, index: i, stream: 1)
            var w = ""
            for k in 0..<n { w += syllables[rng.below(syllables.count, index: i &* 4 &+ UInt64(k), stream: 2)] }
            i += 1
            if seen.insert(w).inserted { words.append(w) }
        }
        vocabulary = words
    }

    static let stop = ["the", "of", "and", "to", "with", "that", "have", "be"]

    /// Document `index` of the distinct stream: `words` words in sentences of 8–20 words, lines of 1–3 sentences.
    public func document(_ index: Int, words: Int = 200) -> String {
        let rng = Philox(seed: seed &+ 0x51)
        var out = ""
        out.reserveCapacity(words * 7)
        var k: UInt64 = UInt64(index) << 20
        var inSentence = 0, sentenceLength = 12, sentencesInLine = 0
        for w in 0..<words {
            let u = rng.uniform(index: k, stream: 3)
            // Zipf-like: square of a uniform favours the first words.
            let word: String
            if u < 0.25 { word = Self.stop[rng.below(Self.stop.count, index: k, stream: 4)] } else {
                let r = rng.uniform(index: k, stream: 5)
                word = vocabulary[min(vocabulary.count - 1, Int(Float(vocabulary.count) * r * r))]
            }
            k += 1
            if inSentence == 0 {
                out += word.prefix(1).uppercased() + word.dropFirst()
                sentenceLength = 8 + rng.below(13, index: k, stream: 6)
            } else { out += word }
            inSentence += 1
            if inSentence >= sentenceLength || w == words - 1 {
                out += "."
                inSentence = 0
                sentencesInLine += 1
                if sentencesInLine >= 1 + rng.below(3, index: k, stream: 7) && w != words - 1 {
                    out += "\n"
                    sentencesInLine = 0
                    continue
                }
            }
            if w != words - 1 { out += " " }
        }
        return out
    }

    /// `text` with `edits` single-word edits (replace, insert or delete at random places).
    public func edit(_ text: String, edits: Int, salt: UInt64) -> String {
        let rng = Philox(seed: seed &+ 0xED17 &+ salt)
        var words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for e in 0..<edits {
            let at = rng.below(max(1, words.count), index: UInt64(e), stream: 1)
            let replacement = vocabulary[rng.below(vocabulary.count, index: UInt64(e), stream: 2)]
            switch rng.below(3, index: UInt64(e), stream: 3) {
            case 0: words[at] = replacement
            case 1: words.insert(replacement, at: at)
            default: if words.count > 1 { words.remove(at: at) }
            }
        }
        return words.joined(separator: " ")
    }

    /// `count` documents: distinct ones, with `exactFraction` exact and `nearFraction` near copies
    /// (`edits` word edits each) of earlier documents mixed in at random places.
    public func items(count: Int, words: Int = 200, exactFraction: Double = 0.05, nearFraction: Double = 0.1, edits: Int = 3) -> [Item] {
        let rng = Philox(seed: seed &+ 0xC0FF)
        var items: [Item] = []
        items.reserveCapacity(count)
        var distinct = 0
        var originals: [Int] = []
        for i in 0..<count {
            let u = Double(rng.uniform(index: UInt64(i), stream: 1))
            if i > 0 && u < exactFraction + nearFraction, !originals.isEmpty {
                let of = originals[rng.below(originals.count, index: UInt64(i), stream: 2)]
                if u < exactFraction {
                    items.append(Item(text: items[of].text, copyOf: of, exact: true))
                } else {
                    items.append(Item(text: edit(items[of].text, edits: edits, salt: UInt64(i)), copyOf: of, exact: false))
                }
            } else {
                originals.append(items.count)
                items.append(Item(text: document(distinct, words: words), copyOf: nil, exact: false))
                distinct += 1
            }
        }
        return items
    }
}
