import Checkpoint
import Foundation

/// The training tokens and the held-out validation tokens of a `data:` section.
///
/// * `validation_fraction: f` — the stream's last ⌈f · n⌉ tokens are held out; training reads
///   only the first n − ⌈f · n⌉, so no validation token is ever a training input or target.
/// * `validation_path: FILE` — the validation tokens come from that file, read like `path`.
/// * A token file with a 1-D `validation` tensor beside `tokens` (what the coordinator writes
///   into the run directory after splitting) — that tensor.
public struct ValidationSplit: Sendable {
    public let train: TokenSource
    /// nil: no validation data configured.
    public let validation: [Int32]?

    public init(train: TokenSource, validation: [Int32]?) {
        self.train = train
        self.validation = validation
    }

    public static func load(_ config: DataConfig) throws -> ValidationSplit {
        let source = try TokenSource.load(config)
        if config.source == "tokens", let path = config.path,
           let file = try? SafeTensorsFile(contentsOf: URL(fileURLWithPath: path)), let e = file.entry("validation"), e.shape.count == 1 {
            return ValidationSplit(train: source, validation: try file.int32s("validation"))
        }
        if config.validationFraction > 0 {
            guard case .stream(let tokens) = source else {
                throw DataError(.invalidConfig, config.source == "shards"
                    ? "data.validation_fraction: token shards have their own held-out split: set data.validation_path (the directory's validation-*.zts)"
                    : "data.validation_fraction: needs a token stream; \(config.path ?? "the data") is pre-batched (use data.validation_path)")
            }
            let held = Int((Double(tokens.count) * config.validationFraction).rounded(.up))
            let kept = tokens.count - held
            guard kept >= config.seqLen + 1, held >= config.seqLen + 1 else {
                throw DataError(.tooShort, "data.validation_fraction \(config.validationFraction) of \(tokens.count) tokens leaves \(kept) for training and \(held) for validation; each needs data.seq_len + 1 = \(config.seqLen + 1)")
            }
            return ValidationSplit(train: .stream(Array(tokens[..<kept])), validation: Array(tokens[kept...]))
        }
        if let path = config.validationPath {
            var v = config
            v.source = config.source == "builtin" ? "text" : config.source
            v.path = path
            v.split = config.source == "shards" ? "validation" : nil
            v.validationPath = nil
            v.curriculum = nil  // every held-out document, in file order
            let tokens: [Int32]
            switch try TokenSource.load(v) {
            case .stream(let t): tokens = t
            case .mapped(let t, _): tokens = t.tokens(0..<t.count)  // the validation shards, in file order
            case .batches: throw DataError(.invalidConfig, "data.validation_path: \(path) is pre-batched; validation needs a token stream")
            }
            guard tokens.count >= config.seqLen + 1 else {
                throw DataError(.tooShort, "data.validation_path: \(path) has \(tokens.count) tokens; one sequence needs data.seq_len + 1 = \(config.seqLen + 1)")
            }
            return ValidationSplit(train: source, validation: tokens)
        }
        return ValidationSplit(train: source, validation: nil)
    }
}
