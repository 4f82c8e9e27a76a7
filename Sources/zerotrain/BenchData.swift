import ArgumentParser
import Common
import Data
import Foundation
import Tensor
#if canImport(Glibc)
import Glibc
#endif

/// `zerotrain bench data …`: the data pipeline's throughput, against the Python tools when
/// `--python` names an interpreter with datasketch / tokenizers (scripts/bench/data_peer.py).
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Data pipeline throughput: MinHash dedup, BPE train/encode, ingest, prepare memory (docs/benchmarks.md).",
        subcommands: [BenchDataDedup.self, BenchDataTokenizer.self, BenchDataIngest.self, BenchDataPrepare.self])
}

/// Peak resident set of this process so far, MiB.
func peakRSSMiB() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

/// CPU seconds (user + system) this process has used so far, all threads.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

/// Runs the peer script; its last stdout line is a JSON object.
func runPeer(python: String, arguments: [String]) throws -> [String: Any] {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/bench/data_peer.py").path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: python)
    p.arguments = [script] + arguments
    var env = ProcessInfo.processInfo.environment
    env["RAYON_NUM_THREADS"] = "2"
    p.environment = env
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0, let last = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
          let obj = try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any] else {
        throw DataError(.malformed, "\(python) \(script) \(arguments.joined(separator: " ")): failed (exit \(p.terminationStatus))")
    }
    return obj
}

func writeJSONL(_ texts: [String], to path: String) throws {
    var out: [UInt8] = []
    for (i, t) in texts.enumerated() {
        Document(id: String(i), text: t, source: "synthetic", line: i + 1).appendJSONL(to: &out)
    }
    try Data(out).write(to: URL(fileURLWithPath: path))
}

struct BenchDataDedup: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dedup", abstract: "MinHash-LSH near dedup on a generated corpus with planted duplicates.")
    @Option var docs = 20_000
    @Option var words = 200
    @Option var numPerm = 128
    @Option var threshold = 0.8
    @Option var edits = 2
    @Option var threads = 2
    @Option(help: "Python with datasketch: also run datasketch MinHash + MinHashLSH on the same input.") var python: String?
    @Option var workdir = "/tmp/zerotrain-bench-data"

    func run() throws {
        try runReportingErrors {
            try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true)
            let items = SyntheticCorpus().items(count: docs, words: words, exactFraction: 0, nearFraction: 0.1, edits: edits)
            let path = (workdir as NSString).appendingPathComponent("dedup.jsonl")
            try writeJSONL(items.map(\.text), to: path)
            // Ours: read the JSONL, sketch on `threads` threads, LSH + union-find keep-first.
            let started = Date()
            var c = IngestConfig()
            c.format = "jsonl"
            let reader = PrefetchingReader(try DocumentReader(inputs: [path], config: c))
            defer { reader.cancel() }
            let hasher = MinHasher(numPerm: numPerm)
            let bands = LSHBands.optimal(threshold: threshold, numPerm: numPerm)
            var index = NearDuplicateIndex(bands: bands)
            let pool = ThreadPool(threads: threads)
            var readSeconds = 0.0, sketchSeconds = 0.0, lshSeconds = 0.0
            while true {
                var t = Date()
                let batch = try reader.next()
                readSeconds += Date().timeIntervalSince(t)
                if batch.isEmpty { break }
                t = Date()
                var sigs = [UInt32](repeating: 0, count: batch.count * numPerm)
                var ok = [Bool](repeating: false, count: batch.count)
                sigs.withUnsafeMutableBufferPointer { s in
                    ok.withUnsafeMutableBufferPointer { o in
                        let (s, o) = (s, o)
                        pool.parallelFor(batch.count, minChunk: 16) { r in
                            for i in r { o[i] = hasher.signature(batch[i].text, into: UnsafeMutableBufferPointer(rebasing: s[(i * numPerm)..<((i + 1) * numPerm)])) }
                        }
                    }
                }
                sketchSeconds += Date().timeIntervalSince(t)
                t = Date()
                defer { lshSeconds += Date().timeIntervalSince(t) }
                sigs.withUnsafeBufferPointer { s in
                    for i in 0..<batch.count { index.add(ok[i] ? UnsafeBufferPointer(rebasing: s[(i * numPerm)..<((i + 1) * numPerm)]) : nil) }
                }
            }
            var removed = Set<Int>()
            for i in 0..<index.clusters.count where index.root(i) != i { removed.insert(i) }
            let seconds = Date().timeIntervalSince(started)
            func score(_ removed: Set<Int>) -> (recall: Double, fpr: Double) {
                let planted = items.indices.filter { items[$0].copyOf != nil }
                let distinct = items.indices.filter { items[$0].copyOf == nil }
                let found = planted.filter { removed.contains($0) }.count
                let wrong = distinct.filter { removed.contains($0) }.count
                return (Double(found) / Double(max(1, planted.count)), Double(wrong) / Double(max(1, distinct.count)))
            }
            let ours = score(removed)
            Console.out(String(format: "zerotrain phases: waiting for the JSONL reader thread %.3f s, sketch %.3f s, LSH %.3f s", readSeconds, sketchSeconds, lshSeconds))
            Console.out("corpus: \(docs) documents × \(words) words, \(items.filter { $0.copyOf != nil }.count) planted near duplicates (\(edits) word edits), num_perm \(numPerm), threshold \(threshold) → \(bands.bands) bands × \(bands.rows) rows")
            Console.out(String(format: "zerotrain: %.3f s (%.0f docs/s, %d threads), removed %d, recall %.4f, false-positive rate %.5f, peak RSS %.0f MiB",
                               seconds, Double(docs) / seconds, threads, removed.count, ours.recall, ours.fpr, peakRSSMiB()))
            if let python {
                let r = try runPeer(python: python, arguments: ["dedup", path, String(numPerm), String(threshold)])
                let peerSeconds = r["seconds"] as? Double ?? .nan
                let peerRemoved = Set((r["removed"] as? [Int]) ?? [])
                let peer = score(peerRemoved)
                Console.out(String(format: "datasketch: %.3f s (%.0f docs/s), removed %d, recall %.4f, false-positive rate %.5f, bands %@",
                                   peerSeconds, Double(docs) / peerSeconds, peerRemoved.count, peer.recall, peer.fpr, "\(r["bands"] ?? "?")"))
                Console.out(String(format: "speedup: %.1f×", peerSeconds / seconds))
            }
        }
    }
}

struct BenchDataTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenizer", abstract: "BPE training and batch encoding (byte-level, same vocabulary size).")
    @Option(help: "Text file (paragraphs are documents); default: a generated corpus.") var input: String?
    @Option var docs = 20_000
    @Option var vocabSize = 8192
    @Option var threads = 2
    @Option var python: String?
    @Option var workdir = "/tmp/zerotrain-bench-data"

    func run() throws {
        try runReportingErrors {
            try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true)
            let texts: [String]
            if let input {
                texts = try readTexts([input], textField: "text", textUnit: "paragraph")
            } else {
                let c = SyntheticCorpus()
                texts = (0..<docs).map { c.document($0) }
            }
            let path = (workdir as NSString).appendingPathComponent("tokenizer-corpus.jsonl")
            try writeJSONL(texts, to: path)
            let bytes = texts.reduce(0) { $0 + $1.utf8.count }
            let pool = ThreadPool(threads: threads)
            var t0 = Date()
            let tok = try BPETrainer(vocabularySize: vocabSize).train(texts, pool: pool)
            let trainSeconds = Date().timeIntervalSince(t0)
            let tokPath = (workdir as NSString).appendingPathComponent("tokenizer.json")
            try tok.save(to: tokPath)
            t0 = Date()
            let ids = tok.encode(batch: texts, pool: pool)
            let encodeSeconds = Date().timeIntervalSince(t0)
            let tokens = ids.reduce(0) { $0 + $1.count }
            Console.out("corpus: \(texts.count) documents, \(bytes) bytes; vocabulary \(vocabSize); \(threads) threads")
            Console.out(String(format: "zerotrain: train %.3f s; encode %.3f s (%.1f MB/s, %d tokens)", trainSeconds, encodeSeconds, Double(bytes) / 1e6 / encodeSeconds, tokens))
            if let python {
                let r = try runPeer(python: python, arguments: ["tokenizer", path, String(vocabSize), tokPath])
                let pt = r["train_seconds"] as? Double ?? .nan, pe = r["encode_seconds"] as? Double ?? .nan
                Console.out(String(format: "tokenizers: train %.3f s; encode %.3f s (%.1f MB/s, %d tokens); encoding our tokenizer.json: %@ ids as ours",
                                   pt, pe, Double(bytes) / 1e6 / pe, r["tokens"] as? Int ?? -1, (r["our_tokens"] as? Int) == tokens ? "same count of" : "a different count of"))
                Console.out(String(format: "speedup: train %.2f×, encode %.2f×", pt / trainSeconds, pe / encodeSeconds))
            }
        }
    }
}

struct BenchDataIngest: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "Ingest throughput: plain text (or gzip/zstd) to JSONL with provenance.")
    @Option(help: "Input file (default: a generated plain-text file of --mb MB).") var input: String?
    @Option var mb = 256
    @Option var textUnit = "paragraph"
    @Option var workdir = "/tmp/zerotrain-bench-data"

    func run() throws {
        try runReportingErrors {
            try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true)
            var path = input ?? ""
            if input == nil {
                path = (workdir as NSString).appendingPathComponent("ingest-\(mb)MB.txt")
                if !FileManager.default.fileExists(atPath: path) {
                    let c = SyntheticCorpus()
                    FileManager.default.createFile(atPath: path, contents: nil)
                    let h = FileHandle(forWritingAtPath: path)!
                    var written = 0, i = 0
                    while written < mb << 20 {
                        let d = c.document(i % 5000) + "\n\n"
                        try h.write(contentsOf: Data(d.utf8))
                        written += d.utf8.count
                        i += 1
                    }
                    try h.close()
                }
            }
            let output = (workdir as NSString).appendingPathComponent("ingest-out.jsonl")
            var c = IngestConfig()
            c.textUnit = textUnit
            let t0 = Date(), cpu0 = cpuSeconds()
            let reader = PrefetchingReader(try DocumentReader(inputs: [path], config: c))
            defer { reader.cancel() }
            FileManager.default.createFile(atPath: output, contents: nil)
            let out = FileHandle(forWritingAtPath: output)!
            var buffer: [UInt8] = []
            while true {
                let batch = try reader.next()
                if batch.isEmpty { break }
                for d in batch { d.appendJSONL(to: &buffer) }
                try out.write(contentsOf: buffer)
                buffer.removeAll(keepingCapacity: true)
            }
            try out.close()
            let s = Date().timeIntervalSince(t0), st = reader.stats, cpu = cpuSeconds() - cpu0
            Console.out(String(format: "ingest %@: %d documents, %.1f MB decoded (%.1f MB on disk) in %.3f s = %.0f MB/s (%.2f CPU s: %.0f MB per CPU second); peak RSS %.0f MiB",
                               path, st.documents, Double(st.bytes) / 1e6, Double(st.compressedBytes) / 1e6, s, Double(st.bytes) / 1e6 / s, cpu, Double(st.bytes) / 1e6 / cpu, peakRSSMiB()))
        }
    }
}

struct BenchDataPrepare: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prepare", abstract: "The whole pipeline on a generated corpus of --docs documents: time and peak RSS (run at 1× and 10× to see memory stay flat).")
    @Option var docs = 10_000
    @Option var vocabSize = 4096
    @Option var threads = 2
    @Option var workdir = "/tmp/zerotrain-bench-data"

    func run() throws {
        try runReportingErrors {
            let dir = (workdir as NSString).appendingPathComponent("prepare-\(docs)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let input = (dir as NSString).appendingPathComponent("corpus.jsonl")
            // Streamed to disk: distinct documents, every tenth followed by an exact and an edited copy.
            let c = SyntheticCorpus()
            FileManager.default.createFile(atPath: input, contents: nil)
            let h = FileHandle(forWritingAtPath: input)!
            var buffer: [UInt8] = []
            var n = 0
            for i in 0..<docs {
                let t = c.document(i)
                Document(id: "", text: t, source: "", line: 0).appendJSONL(to: &buffer)
                n += 1
                if i % 10 == 0 {
                    Document(id: "", text: t, source: "", line: 0).appendJSONL(to: &buffer)
                    Document(id: "", text: c.edit(t, edits: 2, salt: UInt64(i)), source: "", line: 0).appendJSONL(to: &buffer)
                    n += 2
                }
                if buffer.count > 4 << 20 { try h.write(contentsOf: buffer); buffer.removeAll(keepingCapacity: true) }
            }
            try h.write(contentsOf: buffer)
            try h.close()
            let rssBefore = peakRSSMiB()
            var cfg = PrepareConfig()
            cfg.inputs = [input]
            cfg.output = (dir as NSString).appendingPathComponent("out")
            cfg.threads = threads
            cfg.tokenizer.vocabSize = vocabSize
            let t0 = Date()
            let r = try PreparePipeline(config: cfg).run()
            let s = Date().timeIntervalSince(t0)
            Console.out(String(format: "prepare: %d documents (%.1f MB) → kept %d, %d tokens in %.2f s (%.1f MB/s); peak RSS %.0f MiB (%.0f MiB before the pipeline)",
                               n, Double(r.ingest.bytes) / 1e6, r.kept, r.trainTokens + r.validationTokens, s, Double(r.ingest.bytes) / 1e6 / s, peakRSSMiB(), rssBefore))
        }
    }
}
