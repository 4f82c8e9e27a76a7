/// Byte-level tokenizer: token = UTF-8 byte (vocabulary 256).
public struct ByteTokenizer: Sendable {
    public static let vocabularySize = 256
    public init() {}

    public func encode(_ text: String) -> [Int32] { text.utf8.map { Int32($0) } }

    /// Bytes back to text; invalid UTF-8 sequences become U+FFFD.
    public func decode(_ tokens: [Int32]) -> String {
        String(decoding: tokens.map { UInt8(clamping: $0) }, as: UTF8.self)
    }
}
