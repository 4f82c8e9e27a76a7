import Data
import Foundation
import Testing
import ZeroTrainTestKit

/// `zerotrain data …` as a user runs it: real files, the built binary, exit codes.
@Suite struct DataCommandTests {
    func expectExit2(_ args: [String], mentions text: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 2, "exit \(r.status) for \(args): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "expected one line, got: \(r.stderr)")
        #expect(r.stderr.hasPrefix("zerotrain: error: ") && r.stderr.contains(text), "stderr: \(r.stderr)")
    }

    func writeCorpus(_ dir: URL, documents: Int = 300) throws -> URL {
        let c = SyntheticCorpus(seed: 3)
        var out: [UInt8] = []
        for (i, item) in c.items(count: documents, words: 120).enumerated() {
            Document(id: "", text: item.text, source: "", line: i).appendJSONL(to: &out)
        }
        let path = dir.appendingPathComponent("corpus.jsonl.gz")
        try Data(try Compression.gzip.compress(out)).write(to: path)
        return path
    }

    @Test func prepareThenTrainInTheLocalCluster() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try writeCorpus(dir)
        try CLI.write("""
            inputs: [corpus.jsonl.gz]
            output: prepared
            dedup: {near: {threshold: 0.7}}
            tokenizer: {vocab_size: 512}
            shards: {validation_fraction: 0.05}
            """, to: dir.appendingPathComponent("prepare.yaml"))
        let p = try CLI.run(["data", "prepare", "--config", dir.appendingPathComponent("prepare.yaml").path])
        #expect(p.status == 0, "\(p.stderr)")
        #expect(p.stdout.contains("near duplicates") && p.stdout.contains("vocabulary 512"))
        let prepared = dir.appendingPathComponent("prepared")
        for f in ["documents.jsonl", "tokenizer.json", "train-00000.zts", "validation-00000.zts", "report.md", "report.json"] {
            #expect(FileManager.default.fileExists(atPath: prepared.appendingPathComponent(f).path), "\(f)")
        }
        try CLI.write("""
            model: {type: transformer, num_layers: 1, hidden_size: 32, num_attention_heads: 4, vocab_size: 512, max_seq_len: 32}
            training: {lr: 3.0e-3, warmup_steps: 1, total_steps: 4, micro_batch_size: 2, seed: 1, threads: 1, log_interval: 1}
            data: {source: shards, path: \(prepared.path), seq_len: 32}
            """, to: dir.appendingPathComponent("train.yaml"))
        let run = dir.appendingPathComponent("run")
        let t = try CLI.run(["local", "--config", dir.appendingPathComponent("train.yaml").path, "--workers", "2", "--run-dir", run.path])
        #expect(t.status == 0, "\(t.stderr)")
        #expect(t.stdout.contains("finished 4 steps"), "\(t.stdout)")
        // A model whose vocabulary is smaller than the shards' is refused before training.
        try CLI.write("""
            model: {type: transformer, num_layers: 1, hidden_size: 32, num_attention_heads: 4, vocab_size: 256, max_seq_len: 32}
            training: {total_steps: 1, micro_batch_size: 2, threads: 1}
            data: {source: shards, path: \(prepared.path), seq_len: 32}
            """, to: dir.appendingPathComponent("small.yaml"))
        try expectExit2(["train", "--config", dir.appendingPathComponent("small.yaml").path], mentions: "model.vocab_size: must be ≥ the vocabulary of the token shards (512")
    }

    /// The shipped config (the README's tour), on a small text corpus instead of tinyshakespeare.
    @Test func shippedPrepareConfigRuns() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = SyntheticCorpus(seed: 8)
        let text = dir.appendingPathComponent("corpus.txt")
        try CLI.write((0..<200).map { c.document($0, words: 60) }.joined(separator: "\n\n"), to: text)
        let out = dir.appendingPathComponent("out")
        let r = try CLI.run(["data", "prepare", "--config", "configs/data/shakespeare.yaml", "--input", text.path, "--output", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("read 200 documents") && r.stdout.contains("vocabulary 1024"), "\(r.stdout)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("train-00000.zts").path))
    }

    @Test func malformedJSONLineAndSkipBad() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.jsonl")
        try CLI.write("{\"text\": \"one\"}\n{\"text\": \"two\"\n{\"text\": \"three\"}\n", to: input)
        let out = dir.appendingPathComponent("out.jsonl").path
        try expectExit2(["data", "ingest", input.path, "-o", out], mentions: "\(input.path):2: not a JSON object")
        let r = try CLI.run(["data", "ingest", input.path, "-o", out, "--skip-bad"])
        #expect(r.status == 0 && r.stdout.contains("2 documents") && r.stdout.contains("skipped 1 malformed"), "\(r.stdout) \(r.stderr)")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2 && lines[1].contains("\"line\":3") && lines[1].contains("\"source\":\"\(input.path)\""))
    }

    @Test func unknownCompressionTooSmallVocabularyAndEmptyCorpus() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let xz = dir.appendingPathComponent("a.txt.xz")
        try CLI.write("x", to: xz)
        try expectExit2(["data", "ingest", xz.path, "-o", dir.appendingPathComponent("o.jsonl").path], mentions: "\(xz.path): unknown compression format .xz")
        let text = dir.appendingPathComponent("t.txt")
        try CLI.write("some text here\n", to: text)
        try expectExit2(["data", "tokenizer", "train", text.path, "--vocab-size", "100", "-o", dir.appendingPathComponent("t.json").path],
                        mentions: "vocabulary size 100 is too small: it must be ≥ 259")
        try CLI.write("inputs: [t.txt]\noutput: out\n", to: dir.appendingPathComponent("p.yaml"))
        try expectExit2(["data", "prepare", "--config", dir.appendingPathComponent("p.yaml").path], mentions: "no documents left after filtering")
        try CLI.write("inputs: [t.txt]\ndedup: {near: {treshold: 0.5}}\n", to: dir.appendingPathComponent("typo.yaml"))
        try expectExit2(["data", "prepare", "--config", dir.appendingPathComponent("typo.yaml").path], mentions: "dedup.near.treshold: unknown key")
    }
}
