import Foundation
import Tensor

/// 64-bit hashing of byte strings for dedup: a fast multiply-mix over 8-byte words (not
/// cryptographic; stable across runs and machines).
public enum TextHash {
    @inline(__always) public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        z = (z ^ (z >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return z ^ (z >> 33)
    }

    public static func hash(_ bytes: UnsafeBufferPointer<UInt8>, seed: UInt64 = 0) -> UInt64 {
        var h = seed ^ (UInt64(bytes.count) &* 0x9E37_79B9_7F4A_7C15)
        var i = 0
        let n = bytes.count
        let raw = UnsafeRawPointer(bytes.baseAddress)
        while i + 8 <= n {
            let w = raw!.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            h = mix(h ^ w) &+ 0x9E37_79B9_7F4A_7C15
            i += 8
        }
        if i < n {
            var w: UInt64 = 0
            var s: UInt64 = 0
            while i < n { w |= UInt64(bytes[i]) << s; s += 8; i += 1 }
            h = mix(h ^ w) &+ 0x9E37_79B9_7F4A_7C15
        }
        return mix(h)
    }

    public static func hash(_ s: String, seed: UInt64 = 0) -> UInt64 {
        var s = s
        return s.withUTF8 { hash($0, seed: seed) }
    }

    /// The exact-dedup key: the hash of the text lower-cased (ASCII), with whitespace runs made one
    /// space and the ends trimmed.
    public static func normalised(_ s: String) -> UInt64 {
        var s = s
        return s.withUTF8 { u in
            var out = [UInt8]()
            out.reserveCapacity(u.count)
            var space = false
            for b in u {
                if QualityFilter.isSpace(b) { space = !out.isEmpty; continue }
                if space { out.append(0x20); space = false }
                out.append(b >= 0x41 && b <= 0x5A ? b | 0x20 : b)
            }
            return out.withUnsafeBufferPointer { hash($0) }
        }
    }
}

/// MinHash signatures over word 5-gram shingles.
///
/// Words are runs of ASCII letters, digits and `_` (BigCode's `[^A-Za-z_0-9]` split) plus any
/// non-ASCII byte, lower-cased. A shingle is `ngram` consecutive words; a document with fewer
/// words has one shingle of all its words. Each shingle hashes to 32 well-mixed bits h (the top of
/// a 64-bit mix); permutation k is `a_k · h + b_k mod 2³²` with odd a_k — datasketch 2.0's
/// "affine32" scheme — and the signature holds the minimum over shingles for every k.
public struct MinHasher: Sendable {
    public let numPerm: Int
    public let ngram: Int
    let a32: [UInt32]
    let b32: [UInt32]

    public init(numPerm: Int, ngram: Int = 5, seed: UInt64 = 1) {
        self.numPerm = numPerm
        self.ngram = ngram
        let rng = Philox(seed: seed)
        let blocks = (0..<numPerm).map { rng.block(index: UInt64($0), stream: 0x3141_5926) }
        a32 = blocks.map { $0.x | 1 }
        b32 = blocks.map { $0.y }
    }

    /// Word hashes of `text`.
    public static func wordHashes(_ text: String) -> [UInt64] {
        var text = text
        return text.withUTF8 { u in
            var out: [UInt64] = []
            out.reserveCapacity(u.count / 5)
            var word = [UInt8]()
            word.reserveCapacity(64)
            func isWord(_ c: UInt8) -> Bool {
                (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A) || c == 0x5F || c >= 0x80
            }
            for c in u {
                if isWord(c) {
                    word.append(c >= 0x41 && c <= 0x5A ? c | 0x20 : c)
                } else if !word.isEmpty {
                    out.append(word.withUnsafeBufferPointer { TextHash.hash($0) })
                    word.removeAll(keepingCapacity: true)
                }
            }
            if !word.isEmpty { out.append(word.withUnsafeBufferPointer { TextHash.hash($0) }) }
            return out
        }
    }

    /// The signature of `text` into `out` (numPerm values); false when the text has no words.
    public func signature(_ text: String, into out: UnsafeMutableBufferPointer<UInt32>) -> Bool {
        let words = Self.wordHashes(text)
        if words.isEmpty { return false }
        let shingles = max(1, words.count - ngram + 1)
        let width = min(ngram, words.count)
        // Shingle hashes first, then the permutations 16 lanes at a time over them.
        var hashes = [UInt64](repeating: 0, count: shingles)
        words.withUnsafeBufferPointer { w in
            for s in 0..<shingles {
                var h: UInt64 = 0x243F_6A88_85A3_08D3
                for k in s..<(s + width) { h = TextHash.mix(h ^ w[k]) }
                hashes[s] = h
            }
        }
        a32.withUnsafeBufferPointer { a in
            b32.withUnsafeBufferPointer { b in
                hashes.withUnsafeBufferPointer { hs in
                    var k = 0
                    while k + 16 <= numPerm {
                        // 16 permutations at once: a·h + b mod 2³² (odd a: a bijection of the pre-mixed h).
                        let av = SIMD16<UInt32>(a[k..<(k + 16)]), bv = SIMD16<UInt32>(b[k..<(k + 16)])
                        var m = SIMD16<UInt32>(repeating: .max)
                        for h in hs { m = pointwiseMin(m, av &* SIMD16(repeating: UInt32(truncatingIfNeeded: h >> 32)) &+ bv) }
                        for j in 0..<16 { out[k + j] = m[j] }
                        k += 16
                    }
                    while k < numPerm {
                        var m = UInt32.max
                        for h in hs { m = min(m, a[k] &* UInt32(truncatingIfNeeded: h >> 32) &+ b[k]) }
                        out[k] = m
                        k += 1
                    }
                }
            }
        }
        return true
    }

    public func signature(_ text: String) -> [UInt32]? {
        var sig = [UInt32](repeating: 0, count: numPerm)
        let ok = sig.withUnsafeMutableBufferPointer { signature(text, into: $0) }
        return ok ? sig : nil
    }

    /// The fraction of equal values: an unbiased estimate of the Jaccard similarity.
    public static func jaccard(_ x: [UInt32], _ y: [UInt32]) -> Double {
        Double(zip(x, y).filter { $0 == $1 }.count) / Double(x.count)
    }
}

/// The LSH banding (b bands of r rows, b·r ≤ num_perm) that minimises the weighted false
/// positives plus false negatives at a Jaccard threshold t — datasketch's `_optimal_param`:
/// FP = ∫₀ᵗ P(s) ds, FN = ∫ₜ¹ 1 − P(s) ds with P(s) = 1 − (1 − sʳ)ᵇ.
public struct LSHBands: Sendable, Equatable {
    public let bands: Int
    public let rows: Int

    public init(bands: Int, rows: Int) {
        self.bands = bands
        self.rows = rows
    }

    public static func optimal(threshold t: Double, numPerm: Int, falsePositiveWeight: Double = 0.5,
                               falseNegativeWeight: Double = 0.5) -> LSHBands {
        func integrate(_ f: (Double) -> Double, _ lo: Double, _ hi: Double) -> Double {
            // Composite Simpson with 256 panels: error far below the gaps between candidates.
            let n = 256
            let h = (hi - lo) / Double(n)
            var s = f(lo) + f(hi)
            for i in 1..<n { s += f(lo + Double(i) * h) * (i % 2 == 1 ? 4 : 2) }
            return s * h / 3
        }
        var best = LSHBands(bands: 1, rows: numPerm), bestError = Double.infinity
        for b in 1...numPerm {
            for r in 1...(numPerm / b) {
                let p = { (s: Double) in 1 - pow(1 - pow(s, Double(r)), Double(b)) }
                let fp = integrate(p, 0, t)
                let fn = integrate({ 1 - p($0) }, t, 1)
                let error = fp * falsePositiveWeight + fn * falseNegativeWeight
                if error < bestError {
                    bestError = error
                    best = LSHBands(bands: b, rows: r)
                }
            }
        }
        return best
    }

    /// The 64-bit key of band `band` of a signature.
    @inline(__always) public func key(_ sig: UnsafeBufferPointer<UInt32>, band: Int) -> UInt64 {
        var h = UInt64(band) &* 0x9E37_79B9_7F4A_7C15
        for k in (band * rows)..<((band + 1) * rows) { h = TextHash.mix(h ^ UInt64(sig[k])) }
        return h
    }
}

