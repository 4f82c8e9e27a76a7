import Data
import Foundation
import Tensor
import Testing

@Suite struct DedupTests {
    /// The (b, r) table of anchors §6, computed by datasketch's `_optimal_param`.
    @Test(arguments: [(0.7, 256, 25, 10), (0.8, 256, 17, 15), (0.85, 256, 13, 19), (0.8, 128, 9, 13), (0.9, 128, 5, 25), (0.7, 128, 14, 9)])
    func bandsMatchDatasketch(_ c: (Double, Int, Int, Int)) {
        #expect(LSHBands.optimal(threshold: c.0, numPerm: c.1) == LSHBands(bands: c.2, rows: c.3))
    }

    @Test func signatureEstimatesJaccard() {
        let h = MinHasher(numPerm: 256)
        let corpus = SyntheticCorpus()
        let a = corpus.document(1, words: 300)
        #expect(h.signature(a) == h.signature(a))
        #expect(MinHasher.jaccard(h.signature(a)!, h.signature(corpus.document(2, words: 300))!) < 0.05)
        // 2 edits in 300 words change at most 10 of 296 shingles: Jaccard ≥ ~0.93.
        let edited = corpus.edit(a, edits: 2, salt: 9)
        #expect(MinHasher.jaccard(h.signature(a)!, h.signature(edited)!) > 0.85)
        #expect(h.signature("") == nil && h.signature("  ,, ") == nil)
        // Case and punctuation do not matter (words are lower-cased runs of [A-Za-z0-9_]).
        #expect(h.signature("The cat, sat on the mat!") == h.signature("the CAT sat on the mat"))
    }

    @Test func unionFindKeepsTheFirst() {
        var u = UnionFind()
        for _ in 0..<6 { _ = u.add() }
        u.union(4, 2)
        u.union(5, 4)
        u.union(3, 1)
        u.union(3, 5)
        #expect((0..<6).map { u.find($0) } == [0, 1, 1, 1, 1, 1])
    }

    /// Planted near duplicates (a few word edits) and exact copies among distinct documents.
    @Test(arguments: [(0.7, 128, 4), (0.8, 128, 2), (0.8, 256, 2)])
    func recallAndFalsePositives(_ c: (Double, Int, Int)) {
        let (threshold, numPerm, edits) = c
        let items = SyntheticCorpus(seed: 11).items(count: 3000, words: 200, exactFraction: 0.05, nearFraction: 0.15, edits: edits)
        let hasher = MinHasher(numPerm: numPerm)
        var index = NearDuplicateIndex(bands: LSHBands.optimal(threshold: threshold, numPerm: numPerm))
        for item in items {
            let sig = hasher.signature(item.text)
            sig!.withUnsafeBufferPointer { _ = index.add($0) }
        }
        let planted = items.indices.filter { items[$0].copyOf != nil }
        let distinct = items.indices.filter { items[$0].copyOf == nil }
        let found = planted.filter { index.root($0) != $0 }.count
        let falsePositives = distinct.filter { index.root($0) != $0 }.count
        let recall = Double(found) / Double(planted.count)
        let fpr = Double(falsePositives) / Double(distinct.count)
        #expect(planted.count > 400)
        #expect(recall >= 0.95, "recall \(recall) at threshold \(threshold)")
        #expect(fpr <= 0.01, "false-positive rate \(fpr)")
        // Every planted copy that was found joined its original's cluster.
        for i in planted where index.root(i) != i { #expect(index.root(i) == index.root(items[i].copyOf!)) }
    }

    /// Planted semantic duplicates: an earlier document's words in a random order, plus 2 edits —
    /// TF-IDF cosine ≈ 1, word 5-gram Jaccard ≈ 0 (MinHash cannot see them).
    @Test func semanticDuplicatesByTFIDFCosine() {
        let corpus = SyntheticCorpus(seed: 21)
        let rng = Philox(seed: 5)
        var texts: [String] = [], copyOf: [Int?] = []
        for i in 0..<2000 {
            if i > 0 && rng.uniform(index: UInt64(i), stream: 1) < 0.1 {
                let of = copyOf[..<i].indices.filter { copyOf[$0] == nil }.last!
                var words = texts[of].split(separator: " ").map(String.init)
                for k in stride(from: words.count - 1, to: 0, by: -1) { words.swapAt(k, rng.below(k + 1, index: UInt64(i * 1000 + k), stream: 2)) }
                texts.append(corpus.edit(words.joined(separator: " "), edits: 2, salt: UInt64(i)))
                copyOf.append(of)
            } else {
                texts.append(corpus.document(i, words: 150))
                copyOf.append(nil)
            }
        }
        var df = DocumentFrequencies()
        let words = texts.map { MinHasher.wordHashes($0) }
        for w in words { df.add(words: w) }
        var index = SemanticIndex(bits: 256, bands: 16, threshold: 0.95)
        #expect(index.maxHamming == 25)
        var flagged: [Bool] = []
        for w in words { flagged.append(index.check(index.signature(words: w, frequencies: df)) != nil) }
        let planted = copyOf.indices.filter { copyOf[$0] != nil }
        let distinct = copyOf.indices.filter { copyOf[$0] == nil }
        let recall = Double(planted.filter { flagged[$0] }.count) / Double(planted.count)
        let fpr = Double(distinct.filter { flagged[$0] }.count) / Double(distinct.count)
        #expect(planted.count > 150)
        #expect(recall >= 0.95, "semantic recall \(recall)")
        #expect(fpr <= 0.01, "semantic false-positive rate \(fpr)")
        // MinHash over word 5-grams does not see these (Jaccard of shuffled text ≈ 0).
        let h = MinHasher(numPerm: 128)
        let i = planted[0]
        #expect(MinHasher.jaccard(h.signature(texts[i])!, h.signature(texts[copyOf[i]!])!) < 0.2)
    }

    @Test func exactKeyNormalisesCaseAndWhitespace() {
        #expect(TextHash.normalised("Hello   World\n") == TextHash.normalised("hello world"))
        #expect(TextHash.normalised("hello world") != TextHash.normalised("hello worlds"))
    }
}
