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

/// Curriculum learning and the reference model, end to end: `data prepare` keeps a JSONL
/// difficulty field (or a reference checkpoint's perplexity) beside the shards, and the local
/// cluster trains easy documents first, identically on one and on two workers.
@Suite struct CurriculumCommandTests {
    func prepare(_ dir: URL, _ extra: String, output: String = "prepared", tokenizer: String = "{vocab_size: 300}", inputs: String = "corpus.jsonl",
                 dedup: String = "{exact: false, near: {enabled: false}}") throws -> CLI.Result {
        let file = dir.appendingPathComponent("prepare-\(output).yaml")
        try CLI.write("""
            inputs: [\(inputs)]
            output: \(output)
            ingest: {difficulty_field: difficulty}
            filters: {gopher_quality: {enabled: false}, gopher_repetition: {enabled: false}, c4: {enabled: false}}
            dedup: \(dedup)
            tokenizer: \(tokenizer)
            shards: {validation_fraction: 0}
            \(extra)
            """, to: file)
        return try CLI.run(["data", "prepare", "--config", file.path])
    }

    @Test func fieldDifficultyTrainsTheSameOnOneAndTwoWorkers() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var out: [UInt8] = []
        for (i, item) in SyntheticCorpus(seed: 5).items(count: 60, words: 80).enumerated() {
            // Difficulty 0…9, not in file order.
            var line: [UInt8] = []
            Document(id: "", text: item.text, source: "", line: i).appendJSONL(to: &line)
            out += Array(line.dropLast(2)) + Array(",\"difficulty\":\((i * 7) % 10)}\n".utf8)
        }
        try Data(out).write(to: dir.appendingPathComponent("corpus.jsonl"))
        let p = try prepare(dir, "difficulty: field")
        #expect(p.status == 0, "\(p.stderr)")
        let prepared = dir.appendingPathComponent("prepared")
        let scores = try DifficultyFile.read(path: prepared.appendingPathComponent("train-00000.difficulty").path,
                                             documents: try TokenShard(path: prepared.appendingPathComponent("train-00000.zts").path).documentCount)
        #expect(scores.count > 40 && Set(scores).isSubset(of: Set((0..<10).map(Double.init))))

        func train(_ name: String, workers: Int, accumulation: Int) throws -> [Double] {
            let file = dir.appendingPathComponent("\(name).yaml")
            try CLI.write("""
                model: {type: transformer, num_layers: 1, hidden_size: 32, num_attention_heads: 4, vocab_size: 300, max_seq_len: 32}
                training: {lr: 3.0e-3, warmup_steps: 1, total_steps: 6, micro_batch_size: 2, gradient_accumulation_steps: \(accumulation), seed: 1, threads: 1, log_interval: 1}
                data:
                  source: shards
                  path: \(prepared.path)
                  seq_len: 32
                  curriculum: {difficulty: score, stages: [{max_difficulty: 2, opens_at: 0}, {max_difficulty: 5, opens_at: 2}, {opens_at: 4}]}
                """, to: file)
            let run = dir.appendingPathComponent(name)
            let r = try CLI.run(["local", "--config", file.path, "--workers", String(workers), "--run-dir", run.path])
            #expect(r.status == 0, "\(r.stderr)")
            let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            return try text.split(separator: "\n").map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double }
        }
        let one = try train("one", workers: 1, accumulation: 2)
        let two = try train("two", workers: 2, accumulation: 1)
        #expect(one.count == 6)
        for (a, b) in zip(one, two) { #expect(abs(a - b) <= 1e-5 * abs(a), "loss \(a) vs \(b)") }

        // A curriculum over a source without documents is a one-line error, exit 2.
        let bad = dir.appendingPathComponent("bad.yaml")
        try CLI.write("""
            model: {type: transformer, num_layers: 1, hidden_size: 32, num_attention_heads: 4, vocab_size: 300, max_seq_len: 32}
            training: {total_steps: 1, micro_batch_size: 2, threads: 1}
            data: {source: builtin, seq_len: 32, curriculum: {stages: [{opens_at: 0}]}}
            """, to: bad)
        let r = try CLI.run(["train", "--config", bad.path])
        #expect(r.status == 2 && r.stderr.contains("data.curriculum: needs source shards"), "\(r.stderr)")
    }

    @Test func referenceModelFiltersByPerplexityAndScoresDifficulty() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var out: [UInt8] = []
        for (i, item) in SyntheticCorpus(seed: 8).items(count: 40, words: 60).enumerated() {
            var line: [UInt8] = []
            Document(id: "", text: item.text, source: "", line: i).appendJSONL(to: &line)
            out += Array(line.dropLast(2)) + Array(",\"difficulty\":\(i)}\n".utf8)
        }
        // Noise the reference model has never seen: it must find these far more surprising.
        for i in 0..<5 {
            // CJK characters: byte tokens the model never saw in training.
            let noise = String((0..<150).map { k in Character(UnicodeScalar(UInt32(0x4E00 + (k * 7919 + i * 104_729) % 20_000))!) })
            var line: [UInt8] = []
            Document(id: "", text: noise, source: "", line: 100 + i).appendJSONL(to: &line)
            out += Array(line.dropLast(2)) + Array(",\"difficulty\":0}\n".utf8)
        }
        try Data(out).write(to: dir.appendingPathComponent("corpus.jsonl"))
        #expect(try prepare(dir, "").status == 0)
        let prepared = dir.appendingPathComponent("prepared")
        // A reference model trained on the corpus, with its tokenizer.
        let cfg = dir.appendingPathComponent("ref.yaml")
        try CLI.write("""
            model: {type: transformer, num_layers: 1, hidden_size: 32, num_attention_heads: 4, vocab_size: 300, max_seq_len: 64}
            training: {lr: 1.0e-2, warmup_steps: 2, total_steps: 40, micro_batch_size: 4, seed: 1, threads: 1, log_interval: 10, checkpoint_dir: \(dir.appendingPathComponent("ref").path)}
            data: {source: shards, path: \(prepared.path), seq_len: 64}
            """, to: cfg)
        let t = try CLI.run(["train", "--config", cfg.path])
        #expect(t.status == 0, "\(t.stderr)")
        let tokenizer = "{path: \(prepared.appendingPathComponent("tokenizer.json").path)}"
        // Every document scored: the noise documents are the most surprising.
        let scored = try prepare(dir, "difficulty: perplexity\nreference_model: ref", output: "scored", tokenizer: tokenizer)
        #expect(scored.status == 0, "\(scored.stderr)")
        let shard = dir.appendingPathComponent("scored/train-00000.zts").path
        let ppl = try DifficultyFile.read(path: DifficultyFile.path(forShard: shard), documents: try TokenShard(path: shard).documentCount)
        #expect(ppl.count == 45 && ppl.allSatisfy { $0 > 1 && $0.isFinite })
        let noise = Array(ppl.suffix(5)), text = Array(ppl.prefix(40))
        #expect(noise.min()! > text.max()!, "noise \(noise) vs text up to \(text.max()!)")
        // The filter drops what is above the cap (between the two groups) and says so.
        let cap = (noise.min()! + text.max()!) / 2
        let filtered = try prepare(dir, "reference_model: ref\nmax_perplexity: \(cap)", output: "filtered", tokenizer: tokenizer)
        #expect(filtered.status == 0 && filtered.stdout.contains("perplexity filter dropped 5"), "\(filtered.stdout)\(filtered.stderr)")
        // A cap nothing passes, and a scorer without a model, are one-line errors.
        let none = try prepare(dir, "reference_model: ref\nmax_perplexity: 1.0001", output: "none", tokenizer: tokenizer)
        #expect(none.status == 2 && none.stderr.contains("no documents left after the perplexity filter"), "\(none.stderr)")
        let missing = try prepare(dir, "difficulty: perplexity", output: "missing")
        #expect(missing.status == 2 && missing.stderr.contains("reference_model: is required for difficulty: perplexity"), "\(missing.stderr)")

        // Semantic dedup on the reference model's mean-pooled embeddings: copies of three
        // documents with one word changed are found; the distinct documents are not.
        var copies = try Data(contentsOf: dir.appendingPathComponent("corpus.jsonl"))
        for (i, item) in SyntheticCorpus(seed: 8).items(count: 3, words: 60).enumerated() {
            var line: [UInt8] = []
            Document(id: "", text: item.text.replacingOccurrences(of: " ", with: " very ", options: [], range: item.text.range(of: " ")), source: "", line: 200 + i).appendJSONL(to: &line)
            copies += Data(Array(line.dropLast(2)) + Array(",\"difficulty\":0}\n".utf8))
        }
        try copies.write(to: dir.appendingPathComponent("copies.jsonl"))
        let semantic = try prepare(dir, "reference_model: ref", output: "semantic", tokenizer: tokenizer, inputs: "copies.jsonl",
                                   dedup: "{exact: false, near: {enabled: false}, semantic: {enabled: true, embedding: model, threshold: 0.98}}")
        #expect(semantic.status == 0 && semantic.stdout.contains("semantic duplicates 3"), "\(semantic.stdout)\(semantic.stderr)")
        let noTokenizer = try prepare(dir, "reference_model: ref", output: "x", dedup: "{semantic: {enabled: true, embedding: model}}")
        #expect(noTokenizer.status == 2 && noTokenizer.stderr.contains("tokenizer.path: dedup.semantic.embedding: model needs"), "\(noTokenizer.stderr)")
    }
}

/// `data augment` and `augment:` / `filters.reference_similarity:` in `data prepare`, as a user runs them.
@Test func augmentCommandAndPrepareStages() throws {
    let dir = CLI.tempDir()
    defer { try? FileManager.default.removeItem(at: dir) }
    var out: [UInt8] = []
    let items = SyntheticCorpus(seed: 11).items(count: 20, words: 80)
    for (i, item) in items.enumerated() { Document(id: "", text: item.text, source: "", line: i).appendJSONL(to: &out) }
    try Data(out).write(to: dir.appendingPathComponent("corpus.jsonl"))
    let augmented = dir.appendingPathComponent("augmented.jsonl")
    let r = try CLI.run(["data", "augment", dir.appendingPathComponent("corpus.jsonl").path, "-o", augmented.path,
                         "--random-swap", "0.1", "--random-deletion", "0.1", "--copies", "2"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("20 documents and 80 augmented records (40 random_deletion, 40 random_swap)"), "\(r.stdout)")
    let lines = try String(contentsOf: augmented, encoding: .utf8).split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    #expect(lines.count == 100)
    // Each original is followed by its copies, which name it.
    #expect(lines[0]["augmented_from"] == nil && lines[1]["augmented_from"] as? String == lines[0]["id"] as? String)
    #expect(Set(lines.compactMap { $0["augmentation"] as? String }) == ["random_swap", "random_deletion"])
    // The same command again gives the same file (seeded).
    let again = dir.appendingPathComponent("again.jsonl")
    _ = try CLI.run(["data", "augment", dir.appendingPathComponent("corpus.jsonl").path, "-o", again.path,
                     "--random-swap", "0.1", "--random-deletion", "0.1", "--copies", "2"])
    #expect(try Data(contentsOf: again) == Data(contentsOf: augmented))
    let none = try CLI.run(["data", "augment", dir.appendingPathComponent("corpus.jsonl").path, "-o", again.path])
    #expect(none.status == 2 && none.stderr.contains("no augmentation enabled"), "\(none.stderr)")

    // In prepare: augmented train records in the shards and augmented.jsonl; a reference set
    // that shares no words with the corpus filters everything.
    try "Quantum chromodynamics gluon lattice renormalisation.\n".write(to: dir.appendingPathComponent("good.txt"), atomically: true, encoding: .utf8)
    func prepare(_ extra: String) throws -> CLI.Result {
        let file = dir.appendingPathComponent("prepare.yaml")
        try CLI.write("""
            inputs: [corpus.jsonl]
            output: prepared
            dedup: {exact: false, near: {enabled: false}}
            tokenizer: {vocab_size: 300}
            shards: {validation_fraction: 0}
            \(extra)
            """, to: file)
        return try CLI.run(["data", "prepare", "--config", file.path])
    }
    let p = try prepare("augment: {random_swap: 0.1}")
    #expect(p.status == 0, "\(p.stderr)")
    #expect(p.stdout.contains("train") && p.stdout.contains("(40 documents)"), "\(p.stdout)")
    #expect(try String(contentsOf: dir.appendingPathComponent("prepared/augmented.jsonl"), encoding: .utf8).split(separator: "\n").count == 20)
    #expect(try String(contentsOf: dir.appendingPathComponent("prepared/report.md"), encoding: .utf8).contains("| random_swap | 20 |"))
    let filtered = try prepare("filters: {reference_similarity: {reference: [good.txt], min_similarity: 0.05}}")
    #expect(filtered.status == 2 && filtered.stderr.contains("no documents left after filtering"), "\(filtered.stderr)")
    #expect(try String(contentsOf: dir.appendingPathComponent("prepared/report.md"), encoding: .utf8).contains("| reference_similarity | 20 |"))
}
