import Data
import FlyingFox
import Foundation
import Tensor
import Synchronization
import Testing

/// Text augmentation: WordNet synonyms read from Debian's database files, EDA's four operations,
/// and back-translation through a real OpenAI-compatible server on loopback.
@Suite struct AugmentTests {
    static let hasWordNet = FileManager.default.fileExists(atPath: WordNet.defaultDirectory + "/index.noun")

    @Test(.enabled(if: AugmentTests.hasWordNet, "needs Debian's wordnet-base (/usr/share/wordnet); scripts/setup.sh installs it"))
    func wordNetSynonymsComeFromTheDatabaseFiles() throws {
        let wn = try WordNet()
        #expect(wn.lemmaCount > 100_000)
        #expect(wn.synonyms(of: "car").contains("automobile"))
        #expect(wn.synonyms(of: "Happy").contains("glad"))
        #expect(!wn.synonyms(of: "car").contains("car"))
        #expect(wn.synonyms(of: "zxqv").isEmpty)
    }

    @Test func missingWordNetIsAClearError() throws {
        var c = AugmentConfig()
        c.synonymReplacement = 0.2
        c.wordnetDir = "/nonexistent/wordnet"
        #expect { try Augmenter(config: c) } throws: {
            ($0 as? DataError)?.message.contains("WordNet: cannot read /nonexistent/wordnet/index.noun") == true
        }
        // Swap and deletion need no database.
        c.synonymReplacement = 0
        c.randomSwap = 0.2
        _ = try Augmenter(config: c)
        #expect { try Augmenter(config: AugmentConfig()) } throws: { ($0 as? DataError)?.message.contains("no augmentation enabled") == true }
        c.randomDeletion = 1.5
        #expect { try Augmenter(config: c) } throws: { ($0 as? DataError)?.message.contains("random_deletion: must be in [0, 1]") == true }
    }

    @Test func edaOperationsKeepTheirPromises() throws {
        let wn = Self.hasWordNet ? try WordNet() : nil
        let eda = EDA(wordNet: wn, seed: 7)
        let text = "The quick brown fox jumps over the lazy dog near the quiet river bank, and then the happy car stops."
        let words = text.split(separator: " ").map(String.init)
        // Swap: the same multiset of words, another order.
        let swapped = eda.apply(.randomSwap, rate: 0.2, to: text, stream: 1).split(separator: " ").map(String.init)
        #expect(swapped.sorted() == words.sorted() && swapped != words)
        // Deletion: a subsequence, shorter, never empty; rate 1 keeps one word.
        let deleted = eda.apply(.randomDeletion, rate: 0.3, to: text, stream: 2).split(separator: " ").map(String.init)
        #expect(deleted.count < words.count && !deleted.isEmpty)
        var it = words.makeIterator()
        #expect(deleted.allSatisfy { d in while let w = it.next() { if w == d { return true } }; return false })
        #expect(eda.apply(.randomDeletion, rate: 1, to: text, stream: 3).split(separator: " ").count == 1)
        // Deterministic in (seed, stream); another stream, another result.
        #expect(eda.apply(.randomSwap, rate: 0.2, to: text, stream: 1) == eda.apply(.randomSwap, rate: 0.2, to: text, stream: 1))
        #expect(eda.apply(.randomSwap, rate: 0.2, to: text, stream: 1) != eda.apply(.randomSwap, rate: 0.2, to: text, stream: 9))
        guard let wn else { return }
        // Synonym replacement: same length, ≥ 1 word changed, each change a WordNet synonym, stop words untouched.
        let replaced = eda.apply(.synonymReplacement, rate: 0.2, to: text, stream: 4).split(separator: " ").map(String.init)
        #expect(replaced.count == words.count)
        let changed = zip(words, replaced).filter { $0 != $1 }
        #expect(changed.count >= 2)
        for (a, b) in changed {
            let core = { (s: String) in s.lowercased().trimmingCharacters(in: .punctuationCharacters) }
            #expect(wn.synonyms(of: core(a)).contains(core(b)), "\(a) → \(b)")
            #expect(!["the", "and", "then"].contains(core(a)))
        }
        // Insertion: the original words in order, plus synonyms of them.
        let inserted = eda.apply(.randomInsertion, rate: 0.1, to: text, stream: 5).split(separator: " ").map(String.init)
        #expect(inserted.count > words.count)
    }

    @Test func backTranslationTalksToAnOpenAICompatibleServer() async throws {
        let requests = Mutex<[Data]>([])
        let authorization = Mutex<[String]>([])
        let server = HTTPServer(address: try sockaddr_in.inet(ip4: "127.0.0.1", port: 0), logger: .disabled)
        await server.appendRoute("POST /v1/chat/completions") { request in
            let body = try await request.bodyData
            let json = try JSONSerialization.jsonObject(with: body) as! [String: Any]
            requests.withLock { $0.append(body) }
            authorization.withLock { $0.append(request.headers[.authorization] ?? "") }
            let messages = json["messages"] as! [[String: String]]
            let text = messages[1]["content"]!
            if text.contains("FAIL") { return HTTPResponse(statusCode: .internalServerError, body: Data("model overloaded".utf8)) }
            // "French" wraps the text, "English" unwraps it and paraphrases.
            let answer = messages[0]["content"]!.contains("to French") ? "FR(\(text))" : String(text.dropFirst(3).dropLast()) + ", indeed"
            let reply: [String: Any] = ["choices": [["index": 0, "message": ["role": "assistant", "content": answer]]]]
            return HTTPResponse(statusCode: .ok, headers: [.contentType: "application/json"], body: try JSONSerialization.data(withJSONObject: reply))
        }
        let task = Task { try await server.run() }
        defer { task.cancel() }
        try await server.waitUntilListening(timeout: 60)
        let port: UInt16
        switch await server.listeningAddress {
        case let .ip4(_, p)?, let .ip6(_, p)?: port = p
        default: Issue.record("the server reports no port"); return
        }

        var config = AugmentConfig()
        var bt = BackTranslationConfig()
        bt.endpoint = "http://127.0.0.1:\(port)/v1"
        bt.model = "tiny-translator"
        bt.apiKeyEnv = "PATH"  // any variable that is set: its value goes out as the Bearer token
        config.backTranslation = bt
        let augmenter = try Augmenter(config: config)
        let docs = [Document(id: "d1", text: "The cat sat on the mat", source: "a.jsonl", line: 3),
                    Document(id: "d2", text: "Dogs bark at night", source: "a.jsonl", line: 4)]
        let records = try await Self.offThePool { try augmenter.augment(batch: docs, pool: ThreadPool(threads: 2)) }
        #expect(records.map(\.document.text) == ["The cat sat on the mat, indeed", "Dogs bark at night, indeed"])
        #expect(records.map(\.origin) == ["d1", "d2"] && records.allSatisfy { $0.operation == .backTranslation })
        #expect(records[0].document.id == "d1-back_translation-0" && records[0].document.source == "a.jsonl" && records[0].document.line == 3)
        var line: [UInt8] = []
        records[0].appendJSONL(to: &line)
        let json = try JSONSerialization.jsonObject(with: Data(line)) as! [String: Any]
        #expect(json["augmented_from"] as? String == "d1" && json["augmentation"] as? String == "back_translation")
        let sent = try requests.withLock { $0 }.map { try JSONSerialization.jsonObject(with: $0) as! [String: Any] }
        #expect(sent.count == 4 && sent.allSatisfy { $0["model"] as? String == "tiny-translator" })
        #expect(authorization.withLock { $0 }.allSatisfy { $0.hasPrefix("Bearer /") })
        // An HTTP error is an error naming the endpoint and the status.
        await #expect { try await Self.offThePool { try augmenter.augment(Document(id: "x", text: "FAIL please", source: "", line: 1)) } } throws: {
            ($0 as? DataError)?.message.contains("/v1/chat/completions: HTTP 500: model overloaded") == true
        }
    }

    /// Runs blocking work on a thread of its own, so the server's tasks keep the cooperative pool.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}

/// The TF-IDF similarity filter against a reference set of good documents.
@Test func referenceSimilarityKeepsWhatReadsLikeTheReferences() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-refsim-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let good = [
        "The ship sailed from the harbour at dawn, and the crew raised the sails against the wind.",
        "Sailors on the old ship told stories of storms at sea and of the harbour lights at night.",
        "At sea the wind filled the sails while the captain watched the waves from the deck of the ship.",
    ]
    let reference = dir.appendingPathComponent("good.txt")
    try good.joined(separator: "\n").write(to: reference, atomically: true, encoding: .utf8)
    var config = ReferenceSimilarityConfig()
    config.reference = [reference.path]
    config.minSimilarity = 0.1
    var ingest = IngestConfig()
    ingest.textUnit = "line"
    let filter = try ReferenceSimilarityFilter(config: config, ingest: ingest)
    #expect(filter.referenceDocuments == 3)
    let similar = filter.similarity("The crew of the ship watched the sails and the sea from the harbour.")
    let unrelated = filter.similarity("function main() { return compile(x, y) + 42; } // TODO refactor")
    #expect(similar > 0.3 && unrelated < 0.02, "similar \(similar), unrelated \(unrelated)")
    #expect(filter.keeps("The crew of the ship watched the sails and the sea from the harbour.") && !filter.keeps("lorem ipsum dolor sit amet"))
    #expect(abs(filter.similarity(good[0]) - filter.similarity(good[0])) == 0)
    config.reference = [dir.appendingPathComponent("empty.txt").path]
    try "".write(to: URL(fileURLWithPath: config.reference[0]), atomically: true, encoding: .utf8)
    #expect { try ReferenceSimilarityFilter(config: config, ingest: ingest) } throws: { ($0 as? DataError)?.message.contains("holds no documents") == true }
}
