import Data
import Foundation
import Testing

@Suite struct TokenShardTests {
    @Test(arguments: [1000, 70_000])
    func writesAndMapsShards(_ vocab: Int) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("train-00000.zts").path
        let w = try TokenShardWriter(path: path, vocabularySize: vocab, eos: 1)
        let docs: [[Int32]] = [[5, 6, 7], [], [Int32(vocab - 1), 2]]
        for d in docs { try w.append(document: d) }
        try w.finish()
        let s = try TokenShard(path: path)
        #expect(s.bytesPerToken == (vocab <= 65_536 ? 2 : 4))
        #expect(s.documentCount == 3 && s.tokenCount == 8 && s.eos == 1 && s.vocabularySize == vocab)
        #expect(s.document(0) == [5, 6, 7, 1] && s.document(1) == [1] && s.document(2) == [Int32(vocab - 1), 2, 1])
        #expect(s.tokens(0..<8) == [5, 6, 7, 1, 1, Int32(vocab - 1), 2, 1])
        #expect(!FileManager.default.fileExists(atPath: path + ".tokens.tmp"))
        var c = DataConfig()
        c.source = "shards"
        c.path = dir.path
        #expect(try TokenSource.load(c).tokenCount == 8)
    }

    @Test func corruptionIsDetected() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("s.zts").path
        let w = try TokenShardWriter(path: path, vocabularySize: 300, eos: 1)
        try w.append(document: Array(0..<100))
        try w.finish()
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 3] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect { try TokenShard(path: path) } throws: { ($0 as? DataError)?.message == "\(path): checksum mismatch (corrupt shard)" }
        try bytes.prefix(bytes.count - 2).write(to: URL(fileURLWithPath: path))
        #expect { try TokenShard(path: path) } throws: { ($0 as? DataError)?.message.contains("truncated or corrupt") == true }
        try Data("not a shard at all, just some text that is long enough for a header....".utf8).write(to: URL(fileURLWithPath: path))
        #expect { try TokenShard(path: path) } throws: { ($0 as? DataError)?.message.contains("bad magic") == true }
    }
}

@Suite struct PrepareTests {
    /// A corpus in three files (JSONL, JSONL.gz, text.zst) with planted exact and near copies and junk.
    static func corpus(_ dir: URL) throws -> (items: [SyntheticCorpus.Item], junk: Int) {
        let items = SyntheticCorpus(seed: 5).items(count: 600, words: 150, exactFraction: 0.05, nearFraction: 0.1, edits: 2)
        let junk = ["Lorem ipsum dolor sit amet. " + SyntheticCorpus().document(1, words: 100),
                    Array(repeating: "The same line of the text again and again with the same words.", count: 20).joined(separator: "\n"),
                    "Too short and that is it."]
        var parts: [[UInt8]] = [[], [], []]
        for (i, t) in (items.map(\.text) + junk).enumerated() {
            Document(id: "x", text: t, source: "gen", line: i).appendJSONL(to: &parts[i % 2])
        }
        try Data(parts[0]).write(to: dir.appendingPathComponent("a.jsonl"))
        try Data(try Compression.gzip.compress(parts[1])).write(to: dir.appendingPathComponent("b.jsonl.gz"))
        let text = (0..<20).map { SyntheticCorpus(seed: 99).document($0, words: 120) }.joined(separator: "\n\n")
        try Data(try Compression.zstd.compress(Array(text.utf8))).write(to: dir.appendingPathComponent("c.txt.zst"))
        return (items, junk.count)
    }

    @Test func pipelineRemovesPlantedDuplicatesAndWritesShards() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let (items, junk) = try Self.corpus(input)
        var c = PrepareConfig()
        c.inputs = [input.path]
        c.output = dir.appendingPathComponent("out").path
        c.ingest.textUnit = "paragraph"
        c.dedup.near.threshold = 0.7
        c.tokenizer.vocabSize = 700
        c.shards.validationFraction = 0.1
        let r = try PreparePipeline(config: c).run()
        let exact = items.filter { $0.copyOf != nil && $0.exact }.count
        let near = items.filter { $0.copyOf != nil && !$0.exact }.count
        #expect(r.ingest.documents == items.count + junk + 20)
        #expect(r.ingest.files == 3)
        #expect(r.droppedByRule["c4.lorem_ipsum"] == 1)
        #expect(r.ingest.documents - r.afterFilters == junk)
        #expect(r.exactDuplicates == exact)
        #expect(Double(r.nearDuplicates) >= 0.95 * Double(near) && r.nearDuplicates <= near + 5)
        #expect(r.kept == r.afterExact - r.nearDuplicates)
        #expect(!r.clusterExamples.isEmpty && r.clusterExamples[0].removed.count >= 1)
        #expect(r.trainDocuments + r.validationDocuments == r.kept && r.validationDocuments > 0)
        let train = try TokenShard(path: dir.appendingPathComponent("out/train-00000.zts").path)
        #expect(train.tokenCount == r.trainTokens && train.documentCount == r.trainDocuments && train.vocabularySize == 700)
        let tok = try BPETokenizer.load(path: dir.appendingPathComponent("out/tokenizer.json").path)
        // Each document is its tokens and EOS; decoding gives a kept text back.
        let first = train.document(0)
        #expect(first.last == tok.specialId("<|eos|>"))
        let lines = try String(contentsOf: dir.appendingPathComponent("out/documents.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == r.kept)
        let md = try String(contentsOf: dir.appendingPathComponent("out/report.md"), encoding: .utf8)
        #expect(md.contains("| exact dedup | \(r.afterExact) | \(exact) |") && md.contains("Near-duplicate clusters"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("out/report.json"))) as! [String: Any]
        #expect(json["near_duplicates"] as? Int == r.nearDuplicates && json["train_tokens"] as? Int == r.trainTokens)
    }

    @Test func semanticStageRemovesShuffledCopies() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = SyntheticCorpus(seed: 12)
        var out: [UInt8] = []
        var planted = 0
        for i in 0..<300 {
            let t = c.document(i, words: 150)
            Document(id: "", text: t, source: "", line: 0).appendJSONL(to: &out)
            if i % 10 == 0 {
                // The same words, sentence order reversed: a semantic, not a near, duplicate.
                let shuffled = t.split(separator: "\n").reversed().joined(separator: " ").split(separator: " ").reversed().joined(separator: " ")
                Document(id: "", text: shuffled + ".", source: "", line: 0).appendJSONL(to: &out)
                planted += 1
            }
        }
        let input = dir.appendingPathComponent("in.jsonl")
        try Data(out).write(to: input)
        var cfg = PrepareConfig()
        cfg.inputs = [input.path]
        cfg.output = dir.appendingPathComponent("out").path
        cfg.filters.c4.enabled = false
        cfg.dedup.semantic.enabled = true
        cfg.tokenizer.vocabSize = 300
        let r = try PreparePipeline(config: cfg).run()
        #expect(r.nearDuplicates == 0)
        #expect(r.semanticDuplicates == planted, "\(r.semanticDuplicates) of \(planted)")
        #expect(r.kept == 300 && r.semanticExamples.first?.kept.id != "?")
    }

    @Test func emptyCorpusAfterFilteringIsAnError() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("junk.txt")
        try "short.\n\nalso short.\n".write(to: input, atomically: true, encoding: .utf8)
        var c = PrepareConfig()
        c.inputs = [input.path]
        c.output = dir.appendingPathComponent("out").path
        c.ingest.textUnit = "paragraph"
        #expect { try PreparePipeline(config: c).run() } throws: { e in
            (e as? DataError)?.code == .empty && (e as? DataError)?.message.contains("no documents left after filtering") == true
        }
    }
}
