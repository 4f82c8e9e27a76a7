import Common

/// `dedup.near:` MinHash-LSH near-duplicate removal.
public struct NearDedupConfig: ConfigSection, Equatable {
    public var enabled = true
    /// Permutations (signature length).
    public var numPerm = 128
    /// Jaccard similarity of word-shingle sets above which documents are duplicates.
    public var threshold = 0.8
    /// Words per shingle.
    public var ngram = 5
    /// Seed of the permutations.
    public var seed: UInt64 = 1
    /// Weights of false positives and false negatives when choosing bands × rows (datasketch's).
    public var falsePositiveWeight = 0.5
    public var falseNegativeWeight = 0.5
    /// Bands and rows to use instead of the optimal choice (both or neither).
    public var bands: Int?
    public var rows: Int?
    /// Clusters shown in the report, and removed members shown per cluster.
    public var examples = 5
    public var examplesPerCluster = 3

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("enabled", \.enabled), .init("num_perm", \.numPerm), .init("threshold", \.threshold), .init("ngram", \.ngram),
        .init("seed", \.seed), .init("false_positive_weight", \.falsePositiveWeight), .init("false_negative_weight", \.falseNegativeWeight),
        .init("bands", \.bands), .init("rows", \.rows), .init("examples", \.examples), .init("examples_per_cluster", \.examplesPerCluster),
    ]

    public func validate(path p: String) throws {
        guard numPerm >= 2 && numPerm <= 4096 else { throw DataError(.invalidConfig, "\(p).num_perm: must be in 2…4096, got \(numPerm)") }
        guard threshold > 0 && threshold < 1 else { throw DataError(.invalidConfig, "\(p).threshold: must be in (0, 1), got \(threshold)") }
        guard ngram >= 1 else { throw DataError(.invalidConfig, "\(p).ngram: must be ≥ 1, got \(ngram)") }
        if (bands == nil) != (rows == nil) { throw DataError(.invalidConfig, "\(p).bands, rows: give both or neither") }
        if let b = bands, let r = rows, b < 1 || r < 1 || b * r > numPerm {
            throw DataError(.invalidConfig, "\(p).bands × rows: must be ≥ 1 and ≤ num_perm (\(numPerm)), got \(b) × \(r)")
        }
    }

    public var lshBands: LSHBands {
        if let bands, let rows { return LSHBands(bands: bands, rows: rows) }
        return LSHBands.optimal(threshold: threshold, numPerm: numPerm, falsePositiveWeight: falsePositiveWeight, falseNegativeWeight: falseNegativeWeight)
    }
}

/// `dedup.semantic:` TF-IDF cosine duplicates via random-hyperplane LSH (off by default).
public struct SemanticDedupConfig: ConfigSection, Equatable {
    public var enabled = false
    /// Cosine similarity of TF-IDF vectors at or above which documents are duplicates.
    public var threshold = 0.95
    /// Signature bits (a multiple of 64) and LSH bands (bits / bands ≤ 64 bits each).
    public var bits = 256
    public var bands = 16
    public var seed: UInt64 = 3
    /// What a document's vector is: "tfidf", or "model" — the mean-pooled final hidden state of
    /// `reference_model` (which needs `tokenizer.path`, the tokenizer it was trained with).
    public var embedding = "tfidf"
    public init() {}
    public static let fields: [ConfigField<Self>] = [
        .init("enabled", \.enabled), .init("threshold", \.threshold), .init("bits", \.bits), .init("bands", \.bands), .init("seed", \.seed),
        .init("embedding", \.embedding),
    ]

    public func validate(path p: String) throws {
        guard threshold > 0 && threshold < 1 else { throw DataError(.invalidConfig, "\(p).threshold: must be in (0, 1), got \(threshold)") }
        guard bits >= 64, bits % 64 == 0, bands >= 1, bits % bands == 0, bits / bands <= 64 else {
            throw DataError(.invalidConfig, "\(p).bits, bands: bits must be a multiple of 64 and of bands with ≤ 64 bits a band, got \(bits), \(bands)")
        }
        guard ["tfidf", "model"].contains(embedding) else { throw DataError(.invalidConfig, "\(p).embedding: must be tfidf or model, got \"\(embedding)\"") }
    }
}

/// `dedup:`.
public struct DedupConfig: ConfigSection, Equatable {
    /// Remove documents whose normalised text (lower case, whitespace collapsed) repeats an earlier one.
    public var exact = true
    public var near = NearDedupConfig()
    public var semantic = SemanticDedupConfig()
    public init() {}
    public static let fields: [ConfigField<Self>] = [.init("exact", \.exact), .init("near", \.near), .init("semantic", \.semantic)]
}

/// `tokenizer:`: train a byte-level BPE on the cleaned corpus, or use an existing tokenizer.json.
public struct TokenizerConfig: ConfigSection, Equatable {
    /// An existing tokenizer.json to use instead of training one.
    public var path: String?
    /// Vocabulary size of a trained tokenizer (≥ 256 + the special tokens).
    public var vocabSize = 4096
    /// Pairs seen fewer times are never merged.
    public var minFrequency = 2
    public var bosToken = "<|bos|>"
    public var eosToken = "<|eos|>"
    public var padToken = "<|pad|>"
    public init() {}
    public static let fields: [ConfigField<Self>] = [
        .init("path", \.path), .init("vocab_size", \.vocabSize), .init("min_frequency", \.minFrequency),
        .init("bos_token", \.bosToken), .init("eos_token", \.eosToken), .init("pad_token", \.padToken),
    ]
    public var specials: [String] { [bosToken, eosToken, padToken] }
}

/// `shards:`.
public struct ShardConfig: ConfigSection, Equatable {
    /// Fraction of documents (chosen by a hash of their id) held out as the validation split.
    public var validationFraction = 0.01
    /// Tokens per shard file before a new one starts.
    public var maxTokensPerShard = 50_000_000
    /// Put BOS before every document (EOS always follows it).
    public var prependBos = false
    public init() {}
    public static let fields: [ConfigField<Self>] = [
        .init("validation_fraction", \.validationFraction), .init("max_tokens_per_shard", \.maxTokensPerShard), .init("prepend_bos", \.prependBos),
    ]
}

/// The config of `zerotrain data prepare`: raw files in, cleaned JSONL, a tokenizer, token shards
/// and a report out.
public struct PrepareConfig: ConfigSection, Equatable {
    /// Input files and directories.
    public var inputs: [String] = []
    /// Output directory (created): documents.jsonl, tokenizer.json, train-*.zts, validation-*.zts, report.md, report.json.
    public var output = "prepared"
    /// Worker threads (the reading thread comes on top).
    public var threads = 2
    public var ingest = IngestConfig()
    public var filters = FilterConfig()
    public var dedup = DedupConfig()
    public var tokenizer = TokenizerConfig()
    public var shards = ShardConfig()
    /// What goes into each shard's difficulty file (curriculum learning, `data.curriculum.difficulty:
    /// score`): "none", "field" (the JSONL number field `ingest.difficulty_field`) or "perplexity"
    /// (under `reference_model`).
    public var difficulty = "none"
    /// A ZeroTrain checkpoint trained with this pipeline's tokenizer: scores documents for
    /// `max_perplexity` and `difficulty: perplexity`.
    public var referenceModel: String?
    /// Drop documents whose perplexity under `reference_model` is above this.
    public var maxPerplexity: Double?
    /// Augmented copies of the train documents (EDA, back-translation), written after each original.
    public var augment: AugmentConfig?

    public init() {}

    /// Whether pass 3 needs the reference model's perplexities.
    public var needsScorer: Bool { difficulty == "perplexity" || maxPerplexity != nil || modelEmbeddings }
    /// Semantic dedup on the reference model's embeddings.
    public var modelEmbeddings: Bool { dedup.semantic.enabled && dedup.semantic.embedding == "model" }

    public static let fields: [ConfigField<Self>] = [
        .init("inputs", \.inputs), .init("output", \.output), .init("threads", \.threads), .init("ingest", \.ingest),
        .init("filters", \.filters), .init("dedup", \.dedup), .init("tokenizer", \.tokenizer), .init("shards", \.shards),
        .init("difficulty", \.difficulty), .init("reference_model", \.referenceModel), .init("max_perplexity", \.maxPerplexity),
        .init("augment", \.augment),
    ]

    public func validate() throws {
        guard !inputs.isEmpty else { throw DataError(.invalidConfig, "inputs: name at least one file or directory") }
        guard threads >= 1 else { throw DataError(.invalidConfig, "threads: must be ≥ 1, got \(threads)") }
        try ingest.validate()
        try filters.referenceSimilarity?.validate(path: "filters.reference_similarity")
        if dedup.near.enabled { try dedup.near.validate(path: "dedup.near") }
        if dedup.semantic.enabled { try dedup.semantic.validate(path: "dedup.semantic") }
        if tokenizer.path == nil && tokenizer.vocabSize < 256 + tokenizer.specials.count {
            throw DataError(.invalidConfig, "tokenizer.vocab_size: \(tokenizer.vocabSize) is too small: it must be ≥ \(256 + tokenizer.specials.count) (256 byte tokens + 3 special tokens)")
        }
        guard shards.validationFraction >= 0 && shards.validationFraction < 1 else {
            throw DataError(.invalidConfig, "shards.validation_fraction: must be in [0, 1), got \(shards.validationFraction)")
        }
        guard ["none", "field", "perplexity"].contains(difficulty) else {
            throw DataError(.invalidConfig, "difficulty: must be none, field or perplexity, got \"\(difficulty)\"")
        }
        if difficulty == "field" && ingest.difficultyField == nil {
            throw DataError(.invalidConfig, "difficulty: field needs ingest.difficulty_field (the JSONL number field to keep)")
        }
        if needsScorer && referenceModel == nil {
            let use = difficulty == "perplexity" ? "difficulty: perplexity" : maxPerplexity != nil ? "max_perplexity" : "dedup.semantic.embedding: model"
            throw DataError(.invalidConfig, "reference_model: is required for \(use) (a ZeroTrain checkpoint trained with this tokenizer)")
        }
        if modelEmbeddings && tokenizer.path == nil {
            throw DataError(.invalidConfig, "tokenizer.path: dedup.semantic.embedding: model needs the tokenizer the reference model was trained with")
        }
        try augment?.validate()
        if let m = maxPerplexity, !(m > 1) { throw DataError(.invalidConfig, "max_perplexity: must be > 1, got \(m)") }
        guard shards.maxTokensPerShard >= 1 else { throw DataError(.invalidConfig, "shards.max_tokens_per_shard: must be ≥ 1") }
    }
}
