import Data
import Foundation
import Tensor
import Testing

/// The Python interpreter for the `tokenizers` parity check: `$ZEROTRAIN_PYTHON`, else `python3`.
enum PythonTokenizers {
    static let interpreter = ProcessInfo.processInfo.environment["ZEROTRAIN_PYTHON"] ?? "python3"

    static func run(_ args: [String]) -> (status: Int32, stdout: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [interpreter] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return (-1, "") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static let available: Bool = {
        let ok = run(["-c", "import tokenizers"]).status == 0
        if !ok { print("note: tokenizers parity test skipped: \(interpreter) cannot import tokenizers (set ZEROTRAIN_PYTHON)") }
        return ok
    }()
}

@Suite struct TokenizerTests {
    static let multilingual = """
    Hello, world! Don't stop — we'll see; it's 2026 and they've 3.14 apples.   Tabs\tand  spaces.
    Été à Paris: naïve café, œuvre. 東京は晴れです。北京欢迎你！ Привет, мир! Γειά σου κόσμε.
    مرحبا بالعالم  שלום עולם  नमस्ते दुनिया  안녕하세요 세계 🎉🎉👩‍👩‍👧 ¿Qué tal? ¡Olé!
    
      trailing   \n\n<|eos|> after the special <|pad|>x
    """

    static func trained(vocab: Int = 600) throws -> BPETokenizer {
        let c = SyntheticCorpus()
        let texts = (0..<200).map { c.document($0, words: 80) } + [multilingual, multilingual.uppercased()]
        return try BPETrainer(vocabularySize: vocab).train(texts, pool: ThreadPool(threads: 2))
    }

    @Test func trainsTheRequestedVocabulary() throws {
        let t = try Self.trained()
        #expect(t.vocabularySize == 600)
        #expect(t.specialId("<|bos|>") == 0 && t.specialId("<|eos|>") == 1 && t.specialId("<|pad|>") == 2)
        let text = SyntheticCorpus().document(5, words: 80)
        #expect(t.encode(text).count < text.utf8.count / 2)
    }

    @Test func roundTripsEveryByteSequence() throws {
        let t = try Self.trained()
        let rng = Philox(seed: 99)
        for n in 0..<200 {
            let len = rng.below(64, index: UInt64(n), stream: 1)
            let bytes = (0..<len).map { UInt8(rng.below(256, index: UInt64(n * 100 + $0), stream: 2)) }
            #expect(t.decodeBytes(t.encode(bytes: bytes)) == bytes)
        }
        let all = (0..<256).map { UInt8($0) }
        #expect(t.decodeBytes(t.encode(bytes: all + all.reversed())) == all + all.reversed())
        #expect(t.decode(t.encode(Self.multilingual)) == Self.multilingual)
        #expect(t.encode("a<|eos|>b").contains(1))
    }

    @Test func savesAndLoadsTokenizerJSON() throws {
        let t = try Self.trained()
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tokenizer.json").path
        try t.save(to: path)
        let back = try BPETokenizer.load(path: path)
        #expect(back.vocabularySize == t.vocabularySize)
        #expect(back.encode(Self.multilingual) == t.encode(Self.multilingual))
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        #expect((obj["pre_tokenizer"] as? [String: Any])?["type"] as? String == "ByteLevel")
        #expect((obj["added_tokens"] as? [[String: Any]])?.count == 3)
    }

    @Test func encodesInParallelLikeSerially() throws {
        let t = try Self.trained()
        let corpus = SyntheticCorpus()
        let texts = (0..<300).map { corpus.document($0 + 1000, words: 50) }
        let parallel = t.encode(batch: texts, pool: ThreadPool(threads: 2)), serial = texts.map { t.encode($0) }
        let same = parallel == serial
        #expect(same)
    }

    @Test func vocabularyTooSmallForSpecials() {
        #expect { try BPETrainer(vocabularySize: 258) } throws: { e in
            (e as? DataError)?.message == "vocabulary size 258 is too small: it must be ≥ 259 (256 byte tokens + 3 special tokens)"
        }
    }

    @Test func malformedTokenizerFilesAreErrors() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.json").path
        try "{\"model\": {\"type\": \"WordPiece\"}}".write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try BPETokenizer.load(path: path) } throws: { ($0 as? DataError)?.message.contains("model.type: must be BPE") == true }
    }

    @Test(.enabled(if: PythonTokenizers.available, "needs Python with tokenizers: set ZEROTRAIN_PYTHON"))
    func huggingFaceTokenizersGiveTheSameIds() throws {
        let t = try Self.trained(vocab: 1000)
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tokenizer.json").path
        try t.save(to: path)
        let texts = [Self.multilingual, SyntheticCorpus().document(77, words: 120), "  leading spaces", "x", "'s 're 'VE", "a\n\n\nb  \t c"]
        for (k, text) in texts.enumerated() {
            let textPath = dir.appendingPathComponent("text-\(k).txt").path
            try text.write(toFile: textPath, atomically: true, encoding: .utf8)
            let r = PythonTokenizers.run(["-c", "import sys; from tokenizers import Tokenizer; t = Tokenizer.from_file(sys.argv[1]); "
                                          + "print(' '.join(map(str, t.encode(open(sys.argv[2], encoding='utf-8').read()).ids)))", path, textPath])
            #expect(r.status == 0)
            let theirs = r.stdout.split(whereSeparator: \.isWhitespace).compactMap { Int32($0) }
            #expect(theirs == t.encode(text), "text \(k)")
        }
    }
}
