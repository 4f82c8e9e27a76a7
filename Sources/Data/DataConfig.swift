import Common
import Foundation

/// The `data:` section of a config file.
public struct DataConfig: ConfigSection, Equatable {
    /// "builtin" (a deterministic generated English-like corpus, no download), "text" (UTF-8 file),
    /// "jsonl" (one JSON object per line with a "text" field) or "tokens" (a pre-batched
    /// safetensors file with int32 `tokens[step, micro, batch, seq_len+1]`, replayed in order) or
    /// "shards" (token shards `.zts` from `zerotrain data prepare`: a file, or a directory's
    /// `<split>-*.zts`).
    public var source: String = "builtin"
    /// File for text, jsonl and tokens sources; file or directory for shards.
    public var path: String?
    /// Which shards of a directory a shards source reads: "train" (when unset) or "validation".
    public var split: String?
    /// Tokens per training sequence (T); inputs are T tokens and targets the next T.
    public var seqLen: Int = 128
    /// Hold out this fraction of the token stream (its tail) for validation; training never
    /// reads it. 0 = none (unless `validation_path`).
    public var validationFraction: Double = 0
    /// A separate validation file of the same kind as `path` (text, jsonl, a token file, shards:
    /// a file or a directory's validation-*.zts; with source builtin, a text file).
    public var validationPath: String?
    /// Easy documents first (shards only): see `CurriculumConfig`.
    public var curriculum: CurriculumConfig?
    /// A byte-level BPE `tokenizer.json` (`zerotrain data tokenizer train`): builtin, text and
    /// jsonl text is encoded with it, and checkpoints record it (copied as tokenizer.json) for
    /// `generate`, `serve` and `export`. Default: for shards, the shard directory's tokenizer.json
    /// when it has one (what `data prepare` writes); otherwise none — the byte-level tokenizer.
    public var tokenizer: String?

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("source", \.source), .init("path", \.path), .init("seq_len", \.seqLen), .init("split", \.split),
        .init("validation_fraction", \.validationFraction), .init("validation_path", \.validationPath), .init("curriculum", \.curriculum),
        .init("tokenizer", \.tokenizer),
    ]

    public func validate(path p: String = "data") throws {
        guard ["builtin", "text", "jsonl", "tokens", "shards"].contains(source) else {
            throw DataError(.invalidConfig, "\(p).source: must be builtin, text, jsonl, tokens or shards, got \"\(source)\"")
        }
        if let split, !["train", "validation"].contains(split) {
            throw DataError(.invalidConfig, "\(p).split: must be train or validation, got \"\(split)\"")
        }
        if source != "builtin" && (path ?? "").isEmpty {
            throw DataError(.invalidConfig, "\(p).path: is required for source \(source)")
        }
        guard seqLen >= 1 else { throw DataError(.invalidConfig, "\(p).seq_len: must be ≥ 1, got \(seqLen)") }
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw DataError(.invalidConfig, "\(p).validation_fraction: must be in [0, 1), got \(validationFraction)")
        }
        if validationFraction > 0, validationPath != nil {
            throw DataError(.invalidConfig, "\(p).validation_path: give either validation_path or validation_fraction, not both")
        }
        if let v = validationPath, v.isEmpty { throw DataError(.invalidConfig, "\(p).validation_path: must not be empty") }
        if let curriculum {
            guard source == "shards" else {
                throw DataError(.invalidConfig, "\(p).curriculum: needs source shards (documents with a difficulty), got source \(source)")
            }
            try curriculum.validate(path: "\(p).curriculum")
        }
        if let tokenizer, tokenizer.isEmpty { throw DataError(.invalidConfig, "\(p).tokenizer: must name a tokenizer.json file") }
    }

    /// The tokenizer.json the run's tokens come from: `tokenizer`, else a shard directory's
    /// tokenizer.json; nil = the byte-level tokenizer.
    public var tokenizerFile: String? {
        if let tokenizer { return tokenizer }
        guard source == "shards", let path else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        let file = URL(fileURLWithPath: path).appendingPathComponent(ModelTokenizer.fileName).path
        return FileManager.default.fileExists(atPath: file) ? file : nil
    }

    /// The tokenizer of `tokenizerFile` (the byte-level one when there is none).
    public func modelTokenizer() throws -> ModelTokenizer {
        guard let file = tokenizerFile else { return .bytes }
        return .bpe(try BPETokenizer.load(path: file))
    }
}

/// Errors of the Data module: data that is missing, empty, malformed or does not fit the
/// config (all the user's to fix).
public typealias DataError = DomainError<DataErrors>
public enum DataErrors: ErrorDomain {
    public enum Code: String, Sendable { case invalidConfig, unreadable, empty, malformed, tooShort, mismatch }
    public static func kind(of code: Code) -> ErrorKind { .badInput }
}
