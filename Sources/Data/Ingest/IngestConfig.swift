import Common

/// `ingest:` of a prepare config: how input files become documents.
public struct IngestConfig: ConfigSection, Equatable {
    /// "auto" (by name: `.jsonl`/`.json`/`.ndjson` before any compression suffix are JSONL, the
    /// rest text), "text" or "jsonl".
    public var format = "auto"
    /// The JSONL field holding a document's text.
    public var textField = "text"
    /// A JSONL number field kept as each document's difficulty (written beside the shards for
    /// `data.curriculum.difficulty: score`); a record without it is a malformed line.
    public var difficultyField: String?
    /// What one document of a text file is: "file", "paragraph" (split on blank lines) or "line".
    public var textUnit = "file"
    /// Skip (and count) malformed JSONL lines instead of stopping at the first.
    public var skipBad = false
    /// Largest document, in bytes: a bigger one is an error naming its file and line.
    public var maxDocumentBytes = 64 << 20
    /// Decoded bytes per batch handed from the reading thread to the workers.
    public var batchBytes = 4 << 20

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("format", \.format), .init("text_field", \.textField), .init("difficulty_field", \.difficultyField), .init("text_unit", \.textUnit),
        .init("skip_bad", \.skipBad), .init("max_document_bytes", \.maxDocumentBytes), .init("batch_bytes", \.batchBytes),
    ]

    public func validate(path p: String = "ingest") throws {
        guard ["auto", "text", "jsonl"].contains(format) else {
            throw DataError(.invalidConfig, "\(p).format: must be auto, text or jsonl, got \"\(format)\"")
        }
        guard ["file", "paragraph", "line"].contains(textUnit) else {
            throw DataError(.invalidConfig, "\(p).text_unit: must be file, paragraph or line, got \"\(textUnit)\"")
        }
        guard !textField.isEmpty else { throw DataError(.invalidConfig, "\(p).text_field: must not be empty") }
        guard maxDocumentBytes >= 1, batchBytes >= 1 else { throw DataError(.invalidConfig, "\(p).max_document_bytes and batch_bytes: must be ≥ 1") }
    }
}
