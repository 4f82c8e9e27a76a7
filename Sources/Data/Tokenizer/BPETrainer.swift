import Foundation
import Tensor

/// Trains a byte-level BPE: pre-tokenize by the GPT-2 pattern and count the pieces (on all the
/// pool's threads), then repeatedly merge the most frequent adjacent pair (ties: the smaller
/// (left, right) ids), updating pair counts incrementally in the words that hold the pair — the
/// algorithm of Hugging Face's BpeTrainer. Ids: the special tokens first, then the 256 bytes in
/// byte order, then one token per merge.
public struct BPETrainer: Sendable {
    public var vocabularySize: Int
    public var specials: [String]
    /// Pairs seen fewer times than this are never merged.
    public var minFrequency: Int

    public init(vocabularySize: Int, specials: [String] = ["<|bos|>", "<|eos|>", "<|pad|>"], minFrequency: Int = 2) throws {
        let least = 256 + specials.count
        guard vocabularySize >= least else {
            throw DataError(.invalidConfig, "vocabulary size \(vocabularySize) is too small: it must be ≥ \(least) (256 byte tokens + \(specials.count) special tokens)")
        }
        guard Set(specials).count == specials.count, !specials.contains("") else {
            throw DataError(.invalidConfig, "special tokens must be distinct and non-empty, got \(specials)")
        }
        self.vocabularySize = vocabularySize
        self.specials = specials
        self.minFrequency = max(1, minFrequency)
    }

    /// Piece counts of `texts` on the pool's threads.
    public static func countPieces(_ texts: [String], pool: ThreadPool) -> [ByteKey: Int] {
        var partial = [[ByteKey: Int]](repeating: [:], count: pool.size)
        partial.withUnsafeMutableBufferPointer { parts in
            let slots = parts
            pool.runOnAll { t in
                var counts: [ByteKey: Int] = [:]
                var i = t
                while i < texts.count {
                    var text = texts[i]
                    text.withUTF8 { u in ByteLevel.split(u) { r in counts[ByteKey(UnsafeBufferPointer(rebasing: u[r])), default: 0] += 1 } }
                    i += pool.size
                }
                slots[t] = counts
            }
        }
        var total = partial[0]
        for p in partial.dropFirst() { total.merge(p, uniquingKeysWith: +) }
        return total
    }

    public func train(_ texts: [String], pool: ThreadPool) throws -> BPETokenizer {
        try train(pieces: Self.countPieces(texts, pool: pool))
    }

    /// Trains from piece counts.
    public func train(pieces: [ByteKey: Int]) throws -> BPETokenizer {
        let base = Int32(specials.count)
        var tokenBytes: [[UInt8]] = specials.map { Array($0.utf8) } + (0..<256).map { [UInt8($0)] }
        // Words sorted by bytes: a deterministic order whatever the dictionary's.
        let sorted = pieces.sorted { $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) }
        var words: [[Int32]] = sorted.map { $0.key.bytes.map { base + Int32($0) } }
        let counts: [Int] = sorted.map(\.value)
        var pairCount: [UInt64: Int] = [:]
        var pairWords: [UInt64: [Int32]] = [:]
        @inline(__always) func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        for (w, word) in words.enumerated() where word.count > 1 {
            for i in 0..<(word.count - 1) {
                let k = key(word[i], word[i + 1])
                pairCount[k, default: 0] += counts[w]
                pairWords[k, default: []].append(Int32(w))
            }
        }
        var heap = PairHeap()
        for (k, c) in pairCount { heap.push(count: c, pair: k) }
        var merges: [(Int32, Int32)] = []
        var seenAt = [Int32](repeating: -1, count: words.count)
        var touched: [UInt64: Int] = [:]
        while tokenBytes.count < vocabularySize, let top = heap.pop() {
            let current = pairCount[top.pair] ?? 0
            if current != top.count {
                if current > 0 { heap.push(count: current, pair: top.pair) }
                continue
            }
            if current < minFrequency { break }
            let a = Int32(truncatingIfNeeded: top.pair >> 32), b = Int32(truncatingIfNeeded: top.pair & 0xFFFF_FFFF)
            let new = Int32(tokenBytes.count)
            tokenBytes.append(tokenBytes[Int(a)] + tokenBytes[Int(b)])
            merges.append((a, b))
            let stamp = Int32(merges.count)
            touched.removeAll(keepingCapacity: true)
            for w32 in pairWords[top.pair] ?? [] {
                let w = Int(w32)
                if seenAt[w] == stamp { continue }
                seenAt[w] = stamp
                let word = words[w]
                guard word.count > 1 else { continue }
                var merged: [Int32] = []
                merged.reserveCapacity(word.count)
                var i = 0, changed = false
                while i < word.count {
                    if i + 1 < word.count && word[i] == a && word[i + 1] == b {
                        merged.append(new); i += 2; changed = true
                    } else { merged.append(word[i]); i += 1 }
                }
                if !changed { continue }
                let c = counts[w]
                for j in 0..<(word.count - 1) { pairCount[key(word[j], word[j + 1]), default: 0] -= c }
                if merged.count > 1 {
                    for j in 0..<(merged.count - 1) {
                        let k = key(merged[j], merged[j + 1])
                        pairCount[k, default: 0] += c
                        if merged[j] == new || merged[j + 1] == new {
                            pairWords[k, default: []].append(w32)
                            touched[k] = 0
                        }
                    }
                }
                words[w] = merged
            }
            pairCount[top.pair] = nil
            pairWords[top.pair] = nil
            for k in touched.keys { if let c = pairCount[k], c > 0 { heap.push(count: c, pair: k) } }
        }
        let specialIds = specials.enumerated().map { ($0.element, Int32($0.offset)) }
        return try BPETokenizer(tokenBytes: tokenBytes, merges: merges, specials: specialIds)
    }
}

/// A binary max-heap of (count, pair); among equal counts the smaller pair first.
struct PairHeap {
    private var items: [(count: Int, pair: UInt64)] = []

    @inline(__always) private func above(_ x: (count: Int, pair: UInt64), _ y: (count: Int, pair: UInt64)) -> Bool {
        x.count > y.count || (x.count == y.count && x.pair < y.pair)
    }

    mutating func push(count: Int, pair: UInt64) {
        items.append((count, pair))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !above(items[i], items[parent]) { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (count: Int, pair: UInt64)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && above(items[l], items[m]) { m = l }
                if r < items.count && above(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
