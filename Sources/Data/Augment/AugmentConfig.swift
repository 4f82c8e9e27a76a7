import Common

/// `augment:` of `zerotrain data augment`: which text augmentations make how many new records.
/// EDA (Wei & Zou, 2019): synonym replacement, random insertion, swap and deletion, each with
/// a rate α (the fraction of a document's words it touches, at least one word), and
/// back-translation through an OpenAI-compatible chat endpoint.
public struct AugmentConfig: ConfigSection, Equatable {
    /// New records per document and operation.
    public var copies = 1
    /// Replace α·n words (stop words excluded) by a random WordNet synonym.
    public var synonymReplacement = 0.0
    /// Insert a random synonym of a random word at a random position, α·n times.
    public var randomInsertion = 0.0
    /// Swap two random words, α·n times.
    public var randomSwap = 0.0
    /// Delete each word with probability α (never all of them).
    public var randomDeletion = 0.0
    public var seed: UInt64 = 42
    /// Where WordNet's database files are (Debian's wordnet-base).
    public var wordnetDir = WordNet.defaultDirectory
    public var backTranslation: BackTranslationConfig?
    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("copies", \.copies), .init("synonym_replacement", \.synonymReplacement), .init("random_insertion", \.randomInsertion),
        .init("random_swap", \.randomSwap), .init("random_deletion", \.randomDeletion), .init("seed", \.seed),
        .init("wordnet_dir", \.wordnetDir), .init("back_translation", \.backTranslation),
    ]

    /// The EDA operations with a positive rate, in a fixed order.
    public var operations: [(AugmentOperation, Double)] {
        [(.synonymReplacement, synonymReplacement), (.randomInsertion, randomInsertion), (.randomSwap, randomSwap), (.randomDeletion, randomDeletion)]
            .filter { $0.1 > 0 }
    }

    public var needsWordNet: Bool { synonymReplacement > 0 || randomInsertion > 0 }

    public func validate(path p: String = "augment") throws {
        guard copies >= 1 else { throw DataError(.invalidConfig, "\(p).copies: must be ≥ 1, got \(copies)") }
        for (op, rate) in [("synonym_replacement", synonymReplacement), ("random_insertion", randomInsertion),
                           ("random_swap", randomSwap), ("random_deletion", randomDeletion)] where !(rate >= 0 && rate <= 1) {
            throw DataError(.invalidConfig, "\(p).\(op): must be in [0, 1], got \(rate)")
        }
        guard !operations.isEmpty || backTranslation != nil else {
            throw DataError(.invalidConfig, "\(p): no augmentation enabled (give a rate to synonym_replacement, random_insertion, random_swap or random_deletion, or back_translation)")
        }
        try backTranslation?.validate(path: "\(p).back_translation")
    }
}

/// `augment.back_translation:` text → `pivot` → `source_language` through a chat-completions
/// endpoint the user names (a local model server, or a hosted one).
public struct BackTranslationConfig: ConfigSection, Equatable {
    /// Base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 (POST …/chat/completions).
    public var endpoint = ""
    public var model = "default"
    public var pivot = "French"
    public var sourceLanguage = "English"
    /// Environment variable holding the API key (sent as a Bearer token when set).
    public var apiKeyEnv = "OPENAI_API_KEY"
    public var timeoutSeconds = 60.0
    public init() {}
    public static let fields: [ConfigField<Self>] = [
        .init("endpoint", \.endpoint), .init("model", \.model), .init("pivot", \.pivot), .init("source_language", \.sourceLanguage),
        .init("api_key_env", \.apiKeyEnv), .init("timeout_seconds", \.timeoutSeconds),
    ]

    public func validate(path p: String) throws {
        guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            throw DataError(.invalidConfig, "\(p).endpoint: must be an http:// or https:// URL, got \"\(endpoint)\"")
        }
        guard timeoutSeconds > 0 else { throw DataError(.invalidConfig, "\(p).timeout_seconds: must be > 0") }
    }
}

public enum AugmentOperation: String, Sendable, CaseIterable {
    case synonymReplacement = "synonym_replacement", randomInsertion = "random_insertion"
    case randomSwap = "random_swap", randomDeletion = "random_deletion", backTranslation = "back_translation"
}
