import Data
import Foundation
import Tensor
import Synchronization
import Testing

/// Text augmentation: WordNet synonyms read from Debian's database files, EDA's four operations,
/// and back-translation through a real HTTP server on loopback speaking the OpenAI chat API.
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

    @Test func backTranslationTalksToAnOpenAICompatibleServer() throws {
        let requests = Mutex<[(authorization: String, body: Data)]>([])
        // A real HTTP server on loopback, on threads of its own (not the test run's task pool,
        // which the other suites' blocking tests can fill).
        let server = try LoopbackHTTPServer { path, headers, body in
            requests.withLock { $0.append((headers["authorization"] ?? "", body)) }
            guard path == "/v1/chat/completions", let json = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
                  let messages = json["messages"] as? [[String: String]], messages.count == 2,
                  let system = messages[0]["content"], let text = messages[1]["content"] else { return (400, Data("bad request".utf8)) }
            if text.contains("FAIL") { return (500, Data("model overloaded".utf8)) }
            // "French" wraps the text, "English" unwraps it and paraphrases.
            let answer = system.contains("to French") ? "FR(\(text))" : String(text.dropFirst(3).dropLast()) + ", indeed"
            let reply: [String: Any] = ["choices": [["index": 0, "message": ["role": "assistant", "content": answer]]]]
            return (200, (try? JSONSerialization.data(withJSONObject: reply)) ?? Data())
        }
        defer { server.stop() }

        var config = AugmentConfig()
        var bt = BackTranslationConfig()
        bt.endpoint = "http://127.0.0.1:\(server.port)/v1"
        bt.model = "tiny-translator"
        bt.apiKeyEnv = "PATH"  // any variable that is set: its value goes out as the Bearer token
        config.backTranslation = bt
        let augmenter = try Augmenter(config: config)
        let docs = [Document(id: "d1", text: "The cat sat on the mat", source: "a.jsonl", line: 3),
                    Document(id: "d2", text: "Dogs bark at night", source: "a.jsonl", line: 4)]
        let records = try augmenter.augment(batch: docs, pool: ThreadPool(threads: 2))
        #expect(records.map(\.document.text) == ["The cat sat on the mat, indeed", "Dogs bark at night, indeed"])
        #expect(records.map(\.origin) == ["d1", "d2"] && records.allSatisfy { $0.operation == .backTranslation })
        #expect(records[0].document.id == "d1-back_translation-0" && records[0].document.source == "a.jsonl" && records[0].document.line == 3)
        var line: [UInt8] = []
        records[0].appendJSONL(to: &line)
        let json = try JSONSerialization.jsonObject(with: Data(line)) as! [String: Any]
        #expect(json["augmented_from"] as? String == "d1" && json["augmentation"] as? String == "back_translation")
        let sent = requests.withLock { $0 }
        let bodies = try sent.map { try JSONSerialization.jsonObject(with: $0.body) as! [String: Any] }
        #expect(bodies.count == 4 && bodies.allSatisfy { $0["model"] as? String == "tiny-translator" })
        #expect(sent.allSatisfy { $0.authorization.hasPrefix("Bearer /") })
        // An HTTP error is an error naming the endpoint and the status.
        #expect { try augmenter.augment(Document(id: "x", text: "FAIL please", source: "", line: 1)) } throws: {
            ($0 as? DataError)?.message.contains("/v1/chat/completions: HTTP 500: model overloaded") == true
        }
    }
}

/// A minimal blocking HTTP/1.1 server on 127.0.0.1 (one connection at a time, `Connection: close`)
/// for the back-translation client's test: a thread accepts, reads the headers and the
/// Content-Length body, and writes the handler's status and JSON body.
final class LoopbackHTTPServer: @unchecked Sendable {  // `fd` is closed once, by stop().
    typealias Handler = @Sendable (_ path: String, _ headers: [String: String], _ body: Data) -> (Int, Data)
    let port: UInt16
    private let fd: Int32

    init(handler: @escaping Handler) throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        guard s >= 0, withUnsafePointer(to: &a, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }) == 0,
              listen(s, 16) == 0,
              withUnsafeMutablePointer(to: &a, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }) == 0 else {
            throw DataError(.unreadable, "cannot listen on 127.0.0.1")
        }
        fd = s
        port = UInt16(bigEndian: a.sin_port)
        let listener = fd
        Thread {
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                Self.serve(c, handler)
                close(c)
            }
        }.start()
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private static func serve(_ c: Int32, _ handler: Handler) {
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        func more() -> Bool {
            let n = read(c, &chunk, chunk.count)
            if n <= 0 { return false }
            data += chunk[0..<n]
            return true
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        var end: Int?
        while end == nil {
            if let r = data.indices.dropLast(3).first(where: { Array(data[$0..<($0 + 4)]) == separator }) { end = r; break }
            if !more() { return }
        }
        let head = String(decoding: data[0..<end!], as: UTF8.self).components(separatedBy: "\r\n")
        let path = head.first?.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while data.count < end! + 4 + length { if !more() { return } }
        let (status, body) = handler(path, headers, Data(data[(end! + 4)..<(end! + 4 + length)]))
        let reply = Array("HTTP/1.1 \(status) \(status == 200 ? "OK" : "Error")\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + Array(body)
        _ = reply.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
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
