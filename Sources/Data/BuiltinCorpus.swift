import Tensor

/// A deterministic English-like corpus generated from a small grammar, so training works with
/// no download. The same bytes every time (fixed seed); learnable structure (words, agreement,
/// punctuation) makes the loss fall clearly within a few hundred steps.
public enum BuiltinCorpus {
    static let subjects = ["the old king", "a young sailor", "the quiet river", "my brother", "the merchant", "a hungry fox",
                           "the queen", "our captain", "the farmer", "a small bird", "the teacher", "the north wind"]
    static let verbs = ["sees", "follows", "remembers", "carries", "finds", "praises", "answers", "watches", "guards", "loves"]
    static let objects = ["the golden crown", "a letter", "the distant hills", "an honest friend", "the evening star",
                          "a wooden boat", "the silver coin", "the open door", "a long road", "the summer rain"]
    static let endings = ["before the night falls", "in the morning", "with great care", "without a word",
                          "near the harbour", "for many years", "at the end of the day", "under the bridge"]

    /// About `bytes` bytes of text.
    public static func text(bytes: Int = 262_144) -> String {
        let rng = Philox(seed: 0x5A17_C0DE)
        var out = ""
        out.reserveCapacity(bytes + 128)
        var i: UInt64 = 0
        func pick(_ words: [String]) -> String {
            defer { i += 1 }
            return words[rng.below(words.count, index: i, stream: 7)]
        }
        while out.utf8.count < bytes {
            var sentence = "\(pick(subjects)) \(pick(verbs)) \(pick(objects))"
            if rng.uniform(index: i, stream: 8) < 0.5 { sentence += " \(pick(endings))" }
            i += 1
            let first = sentence.prefix(1).uppercased()
            out += first + sentence.dropFirst() + (rng.uniform(index: i, stream: 9) < 0.2 ? ".\n" : ". ")
            i += 1
        }
        return out
    }
}
