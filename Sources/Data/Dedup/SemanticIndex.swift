import Foundation

/// Semantic near-duplicates by cosine similarity of TF-IDF vectors, found without comparing all
/// pairs: each document's vector is reduced to a `bits`-bit random-hyperplane signature (SimHash:
/// bit k is the sign of the vector's dot product with a ±1 hyperplane drawn from a hash of
/// (word, k)), so that P(bit differs) = θ/π for the angle θ between two vectors. Bands of the
/// signature are bucket keys; a candidate sharing a bucket is a duplicate when its Hamming
/// distance estimates cos θ ≥ threshold. The first document of a group is kept.
///
/// Document frequencies come from a first pass (`DocumentFrequencies`); memory is the vocabulary's
/// frequency table plus bits/8 bytes and a bucket entry per band per kept document.
public struct SemanticIndex: Sendable {
    public let bits: Int
    public let bands: Int
    public let threshold: Double
    /// The largest Hamming distance that still means cos θ ≥ threshold: bits · acos(threshold) / π.
    public let maxHamming: Int
    private var signatures: [UInt64] = []
    private var tables: [[UInt64: [Int32]]]
    private let seed: UInt64

    public init(bits: Int = 256, bands: Int = 16, threshold: Double = 0.95, seed: UInt64 = 3) {
        precondition(bits % 64 == 0 && bits % bands == 0 && (bits / bands) <= 64, "bits must be a multiple of 64 and of bands, ≤ 64 bits a band")
        self.bits = bits
        self.bands = bands
        self.threshold = threshold
        self.seed = seed
        maxHamming = Int((Double(bits) * acos(threshold) / Double.pi).rounded(.down))
        tables = Array(repeating: [:], count: bands)
    }

    /// The signature of a document from its word hashes, weighted (1 + ln tf) · ln(N / df).
    public func signature(words: [UInt64], frequencies: DocumentFrequencies) -> [UInt64] {
        var tf: [UInt64: Int] = [:]
        for w in words { tf[w, default: 0] += 1 }
        var acc = [Float](repeating: 0, count: bits)
        let n = Double(max(1, frequencies.documents))
        acc.withUnsafeMutableBufferPointer { a in
            for (w, c) in tf {
                let df = Double(max(1, frequencies.counts[w] ?? 1))
                let weight = Float((1 + log(Double(c))) * log((n + 1) / df))
                if weight <= 0 { continue }
                for block in 0..<(bits / 64) {
                    let r = TextHash.mix(w ^ (seed &+ UInt64(block) &* 0x9E37_79B9_7F4A_7C15))
                    for j in 0..<64 { a[block * 64 + j] += (r >> UInt64(j)) & 1 == 1 ? weight : -weight }
                }
            }
        }
        var sig = [UInt64](repeating: 0, count: bits / 64)
        for k in 0..<bits where acc[k] > 0 { sig[k / 64] |= 1 << UInt64(k % 64) }
        return sig
    }

    /// The signature of a dense vector (a model's embedding): hyperplane k has entry ±1 for
    /// dimension j from a hash of (j, k), as for the words of a TF-IDF vector.
    public func signature(dense v: [Float]) -> [UInt64] {
        var acc = [Float](repeating: 0, count: bits)
        for (j, x) in v.enumerated() where x != 0 {
            for block in 0..<(bits / 64) {
                let r = TextHash.mix(UInt64(j) &* 0xD6E8_FEB8_6659_FD93 ^ (seed &+ UInt64(block) &* 0x9E37_79B9_7F4A_7C15))
                for b in 0..<64 { acc[block * 64 + b] += (r >> UInt64(b)) & 1 == 1 ? x : -x }
            }
        }
        var sig = [UInt64](repeating: 0, count: bits / 64)
        for k in 0..<bits where acc[k] > 0 { sig[k / 64] |= 1 << UInt64(k % 64) }
        return sig
    }

    /// Estimated cosine similarity of two signatures.
    public func cosine(_ x: [UInt64], _ y: [UInt64]) -> Double {
        cos(Double.pi * Double(hamming(x[...], y[...])) / Double(bits))
    }

    func hamming(_ x: ArraySlice<UInt64>, _ y: ArraySlice<UInt64>) -> Int {
        zip(x, y).reduce(0) { $0 + ($1.0 ^ $1.1).nonzeroBitCount }
    }

    private func bandKey(_ sig: [UInt64], _ band: Int) -> UInt64 {
        let width = bits / bands
        let start = band * width
        let word = sig[start / 64] >> UInt64(start % 64)
        let masked = width == 64 ? word : word & ((1 << UInt64(width)) - 1)
        return TextHash.mix(masked ^ UInt64(band) &* 0xA24B_AED4_963E_E407)
    }

    /// The earlier document (its index among those added) this one duplicates, or nil — then it
    /// is added.
    public mutating func check(_ sig: [UInt64]) -> Int? {
        let words = bits / 64
        for band in 0..<bands {
            for c in tables[band][bandKey(sig, band)] ?? [] {
                let s = Int(c) * words
                if hamming(signatures[s..<(s + words)], sig[...]) <= maxHamming { return Int(c) }
            }
        }
        let id = signatures.count / words
        signatures += sig
        for band in 0..<bands { tables[band][bandKey(sig, band), default: []].append(Int32(id)) }
        return nil
    }
}

/// Document frequencies of words (by hash): in how many documents each occurs.
public struct DocumentFrequencies: Sendable {
    public private(set) var counts: [UInt64: Int32] = [:]
    public private(set) var documents = 0

    public init() {}

    public mutating func add(words: [UInt64]) {
        documents += 1
        for w in Set(words) { counts[w, default: 0] += 1 }
    }
}
