import Foundation

/// What `zerotrain data prepare` did, stage by stage (written as report.json and report.md).
public struct PrepareReport: Codable, Sendable {
    public struct Example: Codable, Sendable {
        public var id: String
        public var source: String
        public var line: Int
        /// The first 200 characters.
        public var snippet: String
    }

    public struct Cluster: Codable, Sendable {
        /// Documents in the cluster, the kept one included.
        public var size: Int
        public var kept: Example
        public var removed: [Example]
    }

    /// Counts of documents by length in characters: bucket k holds lengths in [2^k, 2^(k+1)) (bucket 0 also 0).
    public struct Histogram: Codable, Sendable {
        public var buckets: [Int] = []
        public mutating func add(_ length: Int) {
            let b = length <= 1 ? 0 : Int.bitWidth - 1 - length.leadingZeroBitCount
            while buckets.count <= b { buckets.append(0) }
            buckets[b] += 1
        }
    }

    public var ingest = IngestStats()
    /// Documents dropped by each quality rule, and lines removed by each C4 line rule.
    public var droppedByRule: [String: Int] = [:]
    public var linesRemovedByRule: [String: Int] = [:]
    public var afterFilters = 0
    public var exactDuplicates = 0
    public var afterExact = 0
    public var nearBands = 0
    public var nearRows = 0
    public var nearDuplicates = 0
    public var nearClusters = 0
    public var clusterExamples: [Cluster] = []
    /// Documents removed as TF-IDF cosine duplicates of an earlier one, and examples.
    public var semanticDuplicates = 0
    public var semanticExamples: [Cluster] = []
    /// Documents whose perplexity under the reference model was above `max_perplexity`.
    public var droppedByPerplexity = 0
    /// Augmented train records added, by operation.
    public var augmented: [String: Int] = [:]
    public var kept = 0
    public var lengthsIn = Histogram()
    public var lengthsKept = Histogram()
    public var tokenizer = ""
    public var vocabularySize = 0
    public var trainDocuments = 0
    public var trainTokens = 0
    public var validationDocuments = 0
    public var validationTokens = 0
    public var shards: [String] = []
    public var bytesPerToken = 0
    /// Seconds per stage (ingest+filter+dedup pass, cluster pass, tokenizer, shards).
    public var seconds: [String: Double] = [:]

    public init() {}

    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.keyEncodingStrategy = .convertToSnakeCase
        return try e.encode(self)
    }

    public func markdown() -> String {
        var s = "# Data preparation report\n\n## Documents per stage\n\n| stage | documents | removed |\n|---|---:|---:|\n"
        s += "| ingest (\(ingest.files) files, \(ingest.bytes) bytes) | \(ingest.documents) | \(ingest.badLines + ingest.missingField) bad lines skipped |\n"
        s += "| quality filters | \(afterFilters) | \(ingest.documents - afterFilters) |\n"
        s += "| exact dedup | \(afterExact) | \(exactDuplicates) |\n"
        s += "| near dedup (MinHash-LSH, \(nearBands) bands × \(nearRows) rows) | \(afterExact - nearDuplicates) | \(nearDuplicates) in \(nearClusters) clusters |\n"
        s += "| semantic dedup (TF-IDF cosine, random-hyperplane LSH) | \(kept) | \(semanticDuplicates) |\n"
        s += "| perplexity filter (reference model) | \(trainDocuments + validationDocuments) | \(droppedByPerplexity) |\n\n"
        if !augmented.isEmpty {
            s += "## Augmented records (train split)\n\n| operation | records |\n|---|---:|\n"
            for (k, v) in augmented.sorted(by: { $0.key < $1.key }) { s += "| \(k) | \(v) |\n" }
            s += "\n"
        }
        if !droppedByRule.isEmpty {
            s += "## Documents dropped by rule\n\n| rule | documents |\n|---|---:|\n"
            for (k, v) in droppedByRule.sorted(by: { $0.key < $1.key }) { s += "| \(k) | \(v) |\n" }
            s += "\n"
        }
        if !linesRemovedByRule.isEmpty {
            s += "## Lines removed by rule\n\n| rule | lines |\n|---|---:|\n"
            for (k, v) in linesRemovedByRule.sorted(by: { $0.key < $1.key }) { s += "| \(k) | \(v) |\n" }
            s += "\n"
        }
        s += "## Length histogram (characters)\n\n| length | ingested | kept |\n|---|---:|---:|\n"
        for k in 0..<max(lengthsIn.buckets.count, lengthsKept.buckets.count) {
            let a = k < lengthsIn.buckets.count ? lengthsIn.buckets[k] : 0
            let b = k < lengthsKept.buckets.count ? lengthsKept.buckets[k] : 0
            if a == 0 && b == 0 { continue }
            s += "| \(1 << k)–\((1 << (k + 1)) - 1) | \(a) | \(b) |\n"
        }
        s += "\n## Tokens\n\n- tokenizer: \(tokenizer) (vocabulary \(vocabularySize), \(bytesPerToken * 8)-bit shards)\n"
        s += "- train: \(trainDocuments) documents, \(trainTokens) tokens\n- validation: \(validationDocuments) documents, \(validationTokens) tokens\n"
        s += "- shards: \(shards.joined(separator: ", "))\n\n"
        if !clusterExamples.isEmpty {
            s += "## Near-duplicate clusters (examples)\n\n"
            for (n, c) in clusterExamples.enumerated() {
                s += "### Cluster \(n + 1): \(c.size) documents\n\n- kept `\(c.kept.id)` (\(c.kept.source):\(c.kept.line)): \(Self.quote(c.kept.snippet))\n"
                for r in c.removed { s += "- removed `\(r.id)` (\(r.source):\(r.line)): \(Self.quote(r.snippet))\n" }
                s += "\n"
            }
        }
        if !semanticExamples.isEmpty {
            s += "## Semantic duplicates (examples)\n\n"
            for c in semanticExamples {
                s += "- kept `\(c.kept.id)`: \(Self.quote(c.kept.snippet))\n"
                for r in c.removed { s += "  - removed `\(r.id)` (\(r.source):\(r.line)): \(Self.quote(r.snippet))\n" }
            }
            s += "\n"
        }
        s += "## Time (s)\n\n" + seconds.sorted(by: { $0.key < $1.key }).map { "- \($0.key): \(String(format: "%.2f", $0.value))" }.joined(separator: "\n") + "\n"
        return s
    }

    static func quote(_ s: String) -> String {
        "“" + s.replacingOccurrences(of: "\n", with: " ⏎ ").replacingOccurrences(of: "|", with: "\\|") + "”"
    }
}
