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
        subcommands: [DataPrepare.self, DataIngest.self, DataAugment.self, TokenizerCommand.self])
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
    if let m = config.referenceModel { config.referenceModel = resolve(m) }
    if let r = config.filters.referenceSimilarity?.reference { config.filters.referenceSimilarity?.reference = r.map(resolve) }
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
            if cfg.needsScorer, let model = cfg.referenceModel {
                pipeline.scorer = try ReferenceModelScorer(checkpoint: model, threads: cfg.threads)
            }
            let line = ProgressLine()
            pipeline.progress = line.show
            let started = Date()
            let r: PrepareReport
            do { r = try pipeline.run() } catch { line.end(); throw error }
            line.end()
            Console.out("read \(r.ingest.documents) documents (\(r.ingest.files) files, \(r.ingest.bytes) bytes\(r.ingest.badLines + r.ingest.missingField > 0 ? ", \(r.ingest.badLines + r.ingest.missingField) bad lines skipped" : ""))")
            Console.out("filters dropped \(r.ingest.documents - r.afterFilters), exact duplicates \(r.exactDuplicates), near duplicates \(r.nearDuplicates) (\(r.nearBands)×\(r.nearRows) bands, \(r.nearClusters) clusters)\(cfg.dedup.semantic.enabled ? ", semantic duplicates \(r.semanticDuplicates)" : ""); kept \(r.kept)")
            if cfg.maxPerplexity != nil { Console.out("perplexity filter dropped \(r.droppedByPerplexity)") }
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

struct DataAugment: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment",
        abstract: "Write every document of the inputs and its augmented copies (EDA with WordNet synonyms, back-translation) as JSONL; each copy names its origin.")

    @Argument(help: "Input files or directories (text, JSONL, .gz, .zst).")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output JSONL file.")
    var output: String

    @Option(name: .long, help: "A YAML file with an augment: section (or a prepare config); the flags below override it.")
    var config: String?

    @Option(name: .long, help: "Synonym replacement rate α (fraction of words).") var synonymReplacement: Double?
    @Option(name: .long, help: "Random insertion rate α.") var randomInsertion: Double?
    @Option(name: .long, help: "Random swap rate α.") var randomSwap: Double?
    @Option(name: .long, help: "Random deletion probability.") var randomDeletion: Double?
    @Option(name: .long, help: "Copies per document and operation.") var copies: Int?
    @Option(name: .long, help: "Seed of the EDA choices.") var seed: UInt64?
    @Option(name: .long, help: "WordNet database directory.") var wordnetDir: String?
    @Option(name: .long, help: "Back-translate through this OpenAI-compatible base URL (…/v1).") var backTranslation: String?
    @Option(name: .long, help: "Model name sent to the back-translation endpoint.") var model: String?
    @Option(name: .long, help: "Pivot language of back-translation.") var pivot: String?
    @Option(name: .long, help: "JSONL field holding the text.") var textField = "text"
    @Option(name: .long, help: "Worker threads.") var threads = 2
    @Flag(name: .long, help: "Skip and count malformed JSONL lines instead of stopping at the first.") var skipBad = false

    func run() throws {
        try runReportingErrors {
            var a = try config.map { try loadPrepareConfig($0).augment ?? AugmentConfig() } ?? AugmentConfig()
            if let v = synonymReplacement { a.synonymReplacement = v }
            if let v = randomInsertion { a.randomInsertion = v }
            if let v = randomSwap { a.randomSwap = v }
            if let v = randomDeletion { a.randomDeletion = v }
            if let v = copies { a.copies = v }
            if let v = seed { a.seed = v }
            if let v = wordnetDir { a.wordnetDir = v }
            if let url = backTranslation {
                var b = a.backTranslation ?? BackTranslationConfig()
                b.endpoint = url
                if let model { b.model = model }
                if let pivot { b.pivot = pivot }
                a.backTranslation = b
            }
            guard threads >= 1 else { throw DataError(.invalidConfig, "--threads: must be ≥ 1") }
            let augmenter = try Augmenter(config: a)
            var ingest = IngestConfig()
            ingest.textField = textField
            ingest.skipBad = skipBad
            let reader = PrefetchingReader(try DocumentReader(inputs: inputs, config: ingest))
            defer { reader.cancel() }
            guard FileManager.default.createFile(atPath: output, contents: nil), let out = FileHandle(forWritingAtPath: output) else {
                throw DataError(.unreadable, "\(output): cannot create")
            }
            let pool = ThreadPool(threads: threads)
            var counts: [String: Int] = [:], originals = 0
            var buffer: [UInt8] = []
            while true {
                let batch = try reader.next()
                if batch.isEmpty { break }
                let records = try augmenter.augment(batch: batch, pool: pool)
                var next = records.startIndex
                for d in batch {
                    d.appendJSONL(to: &buffer)
                    originals += 1
                    while next < records.endIndex, records[next].origin == d.id {
                        records[next].appendJSONL(to: &buffer)
                        counts[records[next].operation.rawValue, default: 0] += 1
                        next += 1
                    }
                }
                try out.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
            }
            try out.close()
            let made = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            Console.out("\(originals) documents and \(counts.values.reduce(0, +)) augmented records (\(made.isEmpty ? "none" : made)) → \(output)")
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
