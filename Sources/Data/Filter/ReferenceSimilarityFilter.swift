import Common
import Foundation

/// `filters.reference_similarity:` keep documents that look like a reference set of good ones.
public struct ReferenceSimilarityConfig: ConfigSection, Equatable {
    /// Files or directories of good documents (text, JSONL, .gz, .zst; read like the inputs).
    public var reference: [String] = []
    /// Documents whose cosine similarity to the reference centroid is below this are dropped.
    public var minSimilarity = 0.05
    public init() {}
    public static let fields: [ConfigField<Self>] = [.init("reference", \.reference), .init("min_similarity", \.minSimilarity)]

    public func validate(path p: String) throws {
        guard !reference.isEmpty else { throw DataError(.invalidConfig, "\(p).reference: name at least one file of good documents") }
        guard minSimilarity >= 0 && minSimilarity < 1 else { throw DataError(.invalidConfig, "\(p).min_similarity: must be in [0, 1), got \(minSimilarity)") }
    }
}

/// The TF-IDF similarity filter: words (the dedup stages' lower-cased word hashes) are weighted
/// (1 + ln tf) · ln((N + 1) / (df + 1)) + 1 with N and df counted over the reference documents
/// (scikit-learn's smooth idf), each reference vector is L2-normalised, and their mean is the
/// centroid. A document's score is the cosine of its own TF-IDF vector (the same idf; words the
/// references never use get the largest idf) with the centroid: 0 for a document sharing no
/// word with them, near 1 for one that reads like their average.
public struct ReferenceSimilarityFilter: Sendable {
    public let minSimilarity: Double
    let idf: [UInt64: Double]
    let unseenIDF: Double
    let centroid: [UInt64: Double]
    let centroidNorm: Double
    public let referenceDocuments: Int

    public init(config: ReferenceSimilarityConfig, ingest: IngestConfig) throws {
        minSimilarity = config.minSimilarity
        let reader = try DocumentReader(inputs: config.reference, config: ingest)
        var documents: [[UInt64]] = []
        var df: [UInt64: Int] = [:]
        while let d = try reader.nextDocument() {
            let words = MinHasher.wordHashes(d.text)
            if words.isEmpty { continue }
            documents.append(words)
            for w in Set(words) { df[w, default: 0] += 1 }
        }
        guard !documents.isEmpty else {
            throw DataError(.empty, "filters.reference_similarity.reference: \(config.reference.joined(separator: ", ")) holds no documents with words")
        }
        let n = Double(documents.count)
        idf = df.mapValues { log((n + 1) / (Double($0) + 1)) + 1 }
        unseenIDF = log(n + 1) + 1
        var sum: [UInt64: Double] = [:]
        for words in documents {
            let v = Self.vector(words, idf: idf, unseen: unseenIDF)
            let norm = v.sorted(by: { $0.key < $1.key }).reduce(0) { $0 + $1.value * $1.value }.squareRoot()
            for (w, x) in v { sum[w, default: 0] += x / norm / n }
        }
        centroid = sum
        centroidNorm = sum.sorted(by: { $0.key < $1.key }).reduce(0) { $0 + $1.value * $1.value }.squareRoot()
        referenceDocuments = documents.count
    }

    static func vector(_ words: [UInt64], idf: [UInt64: Double], unseen: Double) -> [UInt64: Double] {
        var tf: [UInt64: Int] = [:]
        for w in words { tf[w, default: 0] += 1 }
        var v: [UInt64: Double] = [:]
        for (w, c) in tf { v[w] = (1 + log(Double(c))) * (idf[w] ?? unseen) }
        return v
    }

    /// Cosine similarity of a text with the reference centroid.
    public func similarity(_ text: String) -> Double {
        let words = MinHasher.wordHashes(text)
        if words.isEmpty { return 0 }
        let v = Self.vector(words, idf: idf, unseen: unseenIDF)
        var dot = 0.0, norm = 0.0
        // In word order, so the sum (and a decision at the threshold) is the same on every run.
        for (w, x) in v.sorted(by: { $0.key < $1.key }) {
            norm += x * x
            if let c = centroid[w] { dot += x * c }
        }
        return norm == 0 ? 0 : dot / (norm.squareRoot() * centroidNorm)
    }

    public func keeps(_ text: String) -> Bool { similarity(text) >= minSimilarity }
}
