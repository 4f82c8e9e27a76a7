import Common

/// `filters.gopher_quality`: the Gopher quality rules (Rae et al. 2021, Table A1; the defaults of
/// datatrove's GopherQualityFilter). A document failing any enabled rule is dropped.
public struct GopherQualityConfig: ConfigSection, Equatable {
    /// Run these rules at all.
    public var enabled = true
    /// Fewest and most words (whitespace-separated) a document may have.
    public var minWords = 50
    public var maxWords = 100_000
    /// Bounds of the mean word length, in characters (words stripped of surrounding punctuation).
    public var minMeanWordLength = 3.0
    public var maxMeanWordLength = 10.0
    /// Most `#` and ellipsis (`...`, `…`) symbols per word.
    public var maxSymbolWordRatio = 0.1
    /// Most fraction of lines that start with a bullet (•, -, *, ‣, ▪, ●, ◦).
    public var maxBulletLinesRatio = 0.9
    /// Most fraction of lines that end in an ellipsis.
    public var maxEllipsisLinesRatio = 0.3
    /// Least fraction of words that contain a letter.
    public var minAlphaWordsRatio = 0.8
    /// Least number of stop words (the, be, to, of, and, that, have, with) present.
    public var minStopWords = 2

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("enabled", \.enabled), .init("min_words", \.minWords), .init("max_words", \.maxWords),
        .init("min_mean_word_length", \.minMeanWordLength), .init("max_mean_word_length", \.maxMeanWordLength),
        .init("max_symbol_word_ratio", \.maxSymbolWordRatio), .init("max_bullet_lines_ratio", \.maxBulletLinesRatio),
        .init("max_ellipsis_lines_ratio", \.maxEllipsisLinesRatio), .init("min_alpha_words_ratio", \.minAlphaWordsRatio),
        .init("min_stop_words", \.minStopWords),
    ]
}

/// `filters.gopher_repetition`: the Gopher repetition rules (datatrove's GopherRepetitionFilter
/// defaults). Fractions are of the document's characters unless named otherwise; 0 disables a rule.
public struct GopherRepetitionConfig: ConfigSection, Equatable {
    public var enabled = true
    /// Most fraction of lines (split on newlines) that repeat an earlier line.
    public var maxDuplicateLineFraction = 0.30
    /// Most fraction of paragraphs (split on blank lines) that repeat an earlier paragraph.
    public var maxDuplicateParagraphFraction = 0.30
    /// Most fraction of characters in repeated lines / repeated paragraphs.
    public var maxDuplicateLineCharFraction = 0.20
    public var maxDuplicateParagraphCharFraction = 0.20
    /// Most character fraction of the most frequent 2-, 3- and 4-gram of words.
    public var maxTopNgramCharFraction: [Double] = [0.20, 0.18, 0.16]
    /// Most character fraction of repeated 5- … 10-grams of words.
    public var maxDuplicateNgramCharFraction: [Double] = [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("enabled", \.enabled), .init("max_duplicate_line_fraction", \.maxDuplicateLineFraction),
        .init("max_duplicate_paragraph_fraction", \.maxDuplicateParagraphFraction),
        .init("max_duplicate_line_char_fraction", \.maxDuplicateLineCharFraction),
        .init("max_duplicate_paragraph_char_fraction", \.maxDuplicateParagraphCharFraction),
        .init("max_top_ngram_char_fraction", \.maxTopNgramCharFraction),
        .init("max_duplicate_ngram_char_fraction", \.maxDuplicateNgramCharFraction),
    ]
}

/// `filters.c4`: the C4 line rules, as in TensorFlow Datasets' c4_utils (5 words per line,
/// 3 sentences per document; datatrove's C4QualityFilter uses 3 and 5). Lines failing a line rule
/// are removed from the document; a document failing a document rule is dropped.
public struct C4Config: ConfigSection, Equatable {
    public var enabled = true
    /// Keep only lines ending in terminal punctuation (. ? ! ") and not in an ellipsis.
    public var requireTerminalPunctuation = true
    /// Fewest words a kept line has.
    public var minWordsPerLine = 5
    /// Drop lines holding a word longer than this (characters).
    public var maxWordLength = 1000
    /// Drop lines mentioning javascript, and lines with a policy phrase (cookie policy, terms of use …).
    public var dropJavascriptLines = true
    public var dropPolicyLines = true
    /// Drop documents containing "lorem ipsum", or a curly brace.
    public var dropLoremIpsum = true
    public var dropCurlyBrace = true
    /// Fewest sentences a document keeps after the line rules.
    public var minSentences = 3
    /// Drop documents containing any of these words (lower case, whole words): C4's badwords list is
    /// not shipped; name your own.
    public var badWords: [String] = []

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("enabled", \.enabled), .init("require_terminal_punctuation", \.requireTerminalPunctuation),
        .init("min_words_per_line", \.minWordsPerLine), .init("max_word_length", \.maxWordLength),
        .init("drop_javascript_lines", \.dropJavascriptLines), .init("drop_policy_lines", \.dropPolicyLines),
        .init("drop_lorem_ipsum", \.dropLoremIpsum), .init("drop_curly_brace", \.dropCurlyBrace),
        .init("min_sentences", \.minSentences), .init("bad_words", \.badWords),
    ]
}

/// `filters:` of a prepare config.
public struct FilterConfig: ConfigSection, Equatable {
    /// Documents shorter than this many characters (after the line rules) are dropped.
    public var minChars = 1
    public var gopherQuality = GopherQualityConfig()
    public var gopherRepetition = GopherRepetitionConfig()
    public var c4 = C4Config()
    /// The TF-IDF similarity filter against good documents (off when absent).
    public var referenceSimilarity: ReferenceSimilarityConfig?

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("min_chars", \.minChars), .init("gopher_quality", \.gopherQuality),
        .init("gopher_repetition", \.gopherRepetition), .init("c4", \.c4), .init("reference_similarity", \.referenceSimilarity),
    ]
}
