import Foundation

/// The tokenizer a model was trained with, as its checkpoint or Hugging Face folder records it:
/// the byte-level BPE of the folder's `tokenizer.json`, or — for a folder without one (a config
/// that names no tokenizer) — the byte-level tokenizer (token = UTF-8 byte).
public enum ModelTokenizer: Sendable {
    case bytes
    case bpe(BPETokenizer)

    /// The file name a checkpoint and an export keep the tokenizer under.
    public static let fileName = "tokenizer.json"

    /// `folder`'s tokenizer.json, or the byte-level tokenizer when the folder has none.
    public static func load(folder: URL) throws -> ModelTokenizer {
        let url = folder.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return .bytes }
        return .bpe(try BPETokenizer.load(path: url.path))
    }

    /// Ids the tokenizer can produce (all must be below the model's vocab_size).
    public var vocabularySize: Int {
        switch self {
        case .bytes: ByteTokenizer.vocabularySize
        case let .bpe(t): t.vocabularySize
        }
    }

    public var name: String {
        switch self {
        case .bytes: "byte-level"
        case let .bpe(t): "BPE (\(t.vocabularySize) tokens)"
        }
    }

    public func encode(_ text: String) -> [Int32] {
        switch self {
        case .bytes: ByteTokenizer().encode(text)
        case let .bpe(t): t.encode(text)
        }
    }

    /// The bytes of `ids` (a BPE token may end inside a UTF-8 character; special tokens give their content).
    public func decodeBytes(_ ids: [Int32]) -> [UInt8] {
        switch self {
        case .bytes: ids.compactMap { $0 >= 0 && $0 < 256 ? UInt8($0) : nil }
        case let .bpe(t): t.decodeBytes(ids)
        }
    }

    public func decode(_ ids: [Int32]) -> String { String(decoding: decodeBytes(ids), as: UTF8.self) }

    /// The end-of-sequence token (`<|eos|>`), which ends a generation; the byte-level tokenizer has none.
    public var eosId: Int32? {
        switch self {
        case .bytes: nil
        case let .bpe(t): t.specialId("<|eos|>")
        }
    }

    /// The special tokens, by their content.
    public var specialTokens: [String] {
        switch self {
        case .bytes: []
        case let .bpe(t): t.specials.map(\.content)
        }
    }
}
