import ArgumentParser
import Common
import Data
import Foundation
import Tensor
import Training
#if canImport(Glibc)
import Glibc
#endif

/// `zerotrain data …`: raw text to cleaned, deduplicated, tokenised shards (docs/data.md).
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare training data: ingest, filter, deduplicate, train a tokenizer, write token shards (docs/data.md).",
        subcommands: [DataPrepare.self, DataIngest.self, TokenizerCommand.self])
}

/// A progress line on stderr, rewritten in place when stderr is a terminal (nothing otherwise).
final class ProgressLine: @unchecked Sendable {  // Safe: used from the pipeline's calling thread only.
    let enabled = isatty(2) != 0
    func show(_ s: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + s).utf8))
    }
    func end() { if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) } }
}

/// Loads a `zerotrain data prepare` config (YAML or JSON; unknown keys are errors naming the path).
func loadPrepareConfig(_ path: String) throws -> PrepareConfig {
    guard let bytes = FileManager.default.contents(atPath: path), let text = String(data: bytes, encoding: .utf8) else {
        throw ConfigError("\(path): cannot read the config file")
    }
    let tree = try ConfigValue.parse(yaml: text, source: path)
    var config = try ConfigDecoder.decode(PrepareConfig.self, from: tree)
    // Relative inputs and output are relative to the config file's folder.
    let base = (path as NSString).deletingLastPathComponent
    func resolve(_ p: String) -> String { p.hasPrefix("/") || base.isEmpty ? p : ((base as NSString).appendingPathComponent(p) as NSString).standardizingPath }
    config.inputs = config.inputs.map(resolve)
    config.output = resolve(config.output)
    if let t = config.tokenizer.path { config.tokenizer.path = resolve(t) }
    return config
}

struct DataPrepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Run the whole pipeline from a config: documents.jsonl, tokenizer.json, train/validation shards, report.md and report.json.")

    @Option(name: .long, help: "Prepare config (YAML; see configs/data-prepare.yaml). Relative paths are relative to it.")
    var config: String

    @Option(name: .long, help: "Override the output directory.")
    var output: String?

    @Option(name: .long, help: "Override inputs (repeat for several files or directories).")
    var input: [String] = []

    @Option(name: .long, help: "Override threads.")
    var threads: Int?

    @Flag(name: .long, help: "Skip and count malformed JSONL lines instead of stopping at the first.")
    var skipBad = false

    func run() throws {
        try runReportingErrors {
            var cfg = try loadPrepareConfig(config)
            if let output { cfg.output = output }
            if !input.isEmpty { cfg.inputs = input }
            if let threads { cfg.threads = threads }
            if skipBad { cfg.ingest.skipBad = true }
            let pipeline = try PreparePipeline(config: cfg)
            let line = ProgressLine()
            pipeline.progress = line.show
            let started = Date()
            let r: PrepareReport
            do { r = try pipeline.run() } catch { line.end(); throw error }
            line.end()
            Console.out("read \(r.ingest.documents) documents (\(r.ingest.files) files, \(r.ingest.bytes) bytes\(r.ingest.badLines + r.ingest.missingField > 0 ? ", \(r.ingest.badLines + r.ingest.missingField) bad lines skipped" : ""))")
            Console.out("filters dropped \(r.ingest.documents - r.afterFilters), exact duplicates \(r.exactDuplicates), near duplicates \(r.nearDuplicates) (\(r.nearBands)×\(r.nearRows) bands, \(r.nearClusters) clusters)\(cfg.dedup.semantic.enabled ? ", semantic duplicates \(r.semanticDuplicates)" : ""); kept \(r.kept)")
            Console.out("tokenizer \(r.tokenizer), vocabulary \(r.vocabularySize)")
            Console.out("train \(r.trainTokens) tokens (\(r.trainDocuments) documents), validation \(r.validationTokens) tokens (\(r.validationDocuments) documents) in \(cfg.output)")
            Console.out(String(format: "report: %@/report.md (%.1f s)", cfg.output, Date().timeIntervalSince(started)))
        }
    }
}

struct DataIngest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Read text, JSONL, .gz and .zst files (or directories) into one JSONL file with a stable id and provenance per document.")

    @Argument(help: "Input files or directories.")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output JSONL file.")
    var output: String

    @Option(name: .long, help: "auto, text or jsonl.")
    var format = "auto"

    @Option(name: .long, help: "JSONL field holding the text.")
    var textField = "text"

    @Option(name: .long, help: "Document of a text file: file, paragraph or line.")
    var textUnit = "file"

    @Flag(name: .long, help: "Skip and count malformed JSONL lines instead of stopping at the first.")
    var skipBad = false

    func run() throws {
        try runReportingErrors {
            var c = IngestConfig()
            c.format = format
            c.textField = textField
            c.textUnit = textUnit
            c.skipBad = skipBad
            let started = Date()
            let reader = PrefetchingReader(try DocumentReader(inputs: inputs, config: c))
            defer { reader.cancel() }
            guard FileManager.default.createFile(atPath: output, contents: nil), let out = FileHandle(forWritingAtPath: output) else {
                throw DataError(.unreadable, "\(output): cannot create")
            }
            let line = ProgressLine()
            var buffer: [UInt8] = []
            while true {
                let batch: [Document]
                do { batch = try reader.next() } catch { line.end(); throw error }
                if batch.isEmpty { break }
                for d in batch { d.appendJSONL(to: &buffer) }
                try out.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
                line.show("ingest: " + reader.progressLine(elapsed: Date().timeIntervalSince(started)))
            }
            try out.close()
            line.end()
            let s = reader.stats
            let seconds = max(1e-9, Date().timeIntervalSince(started))
            Console.out(String(format: "%d documents from %d files (%.1f MB, %.0f MB/s) → %@", s.documents, s.files, Double(s.bytes) / 1e6, Double(s.bytes) / 1e6 / seconds, output)
                        + (s.badLines + s.missingField > 0 ? "; skipped \(s.badLines) malformed lines and \(s.missingField) without \"\(textField)\"" : ""))
        }
    }
}

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Train and use byte-level BPE tokenizers (Hugging Face tokenizer.json).",
        subcommands: [TokenizerTrain.self, TokenizerEncode.self])
}

/// Texts of the inputs (JSONL documents or text files), for tokenizer training.
func readTexts(_ inputs: [String], textField: String, textUnit: String) throws -> [String] {
    var c = IngestConfig()
    c.textField = textField
    c.textUnit = textUnit
    let reader = try DocumentReader(inputs: inputs, config: c)
    var texts: [String] = []
    while true {
        let b = try reader.nextBatch()
        if b.isEmpty { break }
        texts += b.map(\.text)
    }
    guard !texts.isEmpty else { throw DataError(.empty, "\(inputs.joined(separator: ", ")): no documents") }
    return texts
}

struct TokenizerTrain: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Train a byte-level BPE tokenizer; writes tokenizer.json.")

    @Argument(help: "Input files or directories (JSONL or text; documents.jsonl of `data prepare`).")
    var inputs: [String]

    @Option(name: .long, help: "Vocabulary size, special tokens included (≥ 259).")
    var vocabSize: Int

    @Option(name: .shortAndLong, help: "Output tokenizer.json.")
    var output = "tokenizer.json"

    @Option(name: .long, help: "Pairs seen fewer times are never merged.")
    var minFrequency = 2

    @Option(name: .long, help: "JSONL field holding the text.")
    var textField = "text"

    @Option(name: .long, help: "Document of a text file: file, paragraph or line.")
    var textUnit = "file"

    @Option(name: .long, help: "Threads.")
    var threads = 2

    func run() throws {
        try runReportingErrors {
            let trainer = try BPETrainer(vocabularySize: vocabSize, minFrequency: minFrequency)
            let started = Date()
            let texts = try readTexts(inputs, textField: textField, textUnit: textUnit)
            let tokenizer = try trainer.train(texts, pool: ThreadPool(threads: threads))
            try tokenizer.save(to: output)
            Console.out(String(format: "trained %d tokens (%d merges) on %d documents in %.2f s → %@", tokenizer.vocabularySize,
                               tokenizer.mergeList.count, texts.count, Date().timeIntervalSince(started), output))
        }
    }
}

struct TokenizerEncode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "encode", abstract: "Print the token ids of a text (or of stdin).")

    @Option(name: .long, help: "tokenizer.json")
    var tokenizer: String

    @Option(name: .long, help: "Text to encode (default: stdin).")
    var text: String?

    @Flag(name: .long, help: "Also decode the ids back and check the round trip.")
    var check = false

    func run() throws {
        try runReportingErrors {
            let t = try BPETokenizer.load(path: tokenizer)
            let input = text ?? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            let ids = t.encode(input)
            Console.out(ids.map(String.init).joined(separator: " "))
            if check && t.decode(ids) != input { throw DataError(.mismatch, "round trip failed: decode(encode(text)) differs from the text") }
        }
    }
}
