import Checkpoint
import Data
import Foundation
import Testing

@Suite struct DataTests {
    func temp(_ name: String, _ contents: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-data-\(UUID().uuidString)-\(name)")
        try contents.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func byteTokenizerRoundTrips() {
        let t = ByteTokenizer()
        #expect(t.decode(t.encode("héllo, world")) == "héllo, world")
        #expect(t.encode("A") == [65])
    }

    @Test func builtinCorpusIsDeterministic() {
        #expect(BuiltinCorpus.text(bytes: 5000) == BuiltinCorpus.text(bytes: 5000))
        #expect(BuiltinCorpus.text(bytes: 5000).utf8.count >= 5000)
    }

    @Test func everyWindowOncePerPassAndDeterministic() throws {
        let tokens = (0..<161).map { Int32($0 % 256) }   // 10 windows of 16 + 1
        let s = try BatchSampler(source: .stream(tokens), seqLen: 16, batchSize: 2, accumulation: 1, seed: 3)
        #expect(s.windowsPerPass == 10)
        var starts: [Int32] = []
        for step in 0..<5 {
            let b = s.batch(step: step, micro: 0)
            starts += [b.inputs[0], b.inputs[16]]
            #expect(Array(b.targets[0..<15]) == Array(b.inputs[1..<16]))
        }
        #expect(Set(starts).count == 10)
        let again = try BatchSampler(source: .stream(tokens), seqLen: 16, batchSize: 2, accumulation: 1, seed: 3)
        #expect(again.batch(step: 3, micro: 0) == s.batch(step: 3, micro: 0))
        let other = try BatchSampler(source: .stream(tokens), seqLen: 16, batchSize: 2, accumulation: 1, seed: 4)
        #expect((0..<5).map { other.batch(step: $0, micro: 0) } != (0..<5).map { s.batch(step: $0, micro: 0) })
    }

    @Test func textAndJSONLSources() throws {
        var c = DataConfig()
        c.source = "text"
        c.path = try temp("a.txt", "hello")
        #expect(try TokenSource.load(c).tokenCount == 5)
        c.source = "jsonl"
        c.path = try temp("a.jsonl", "{\"text\": \"ab\"}\n\n{\"text\": \"cd\", \"id\": 1}\n")
        #expect(try TokenSource.load(c).tokenCount == 5)   // "ab\ncd"
    }

    @Test func badDataIsAClearError() throws {
        var c = DataConfig()
        c.source = "text"
        c.path = try temp("empty.txt", "")
        #expect { try TokenSource.load(c) } throws: { ($0 as? DataError)?.code == .empty }
        c.path = "/nonexistent/file.txt"
        #expect { try TokenSource.load(c) } throws: { ($0 as? DataError)?.code == .unreadable }
        c.source = "jsonl"
        c.path = try temp("bad.jsonl", "{\"text\": \"ok\"}\nnot json\n")
        #expect { try TokenSource.load(c) } throws: { ($0 as? DataError)?.message.hasSuffix(":2: not a JSON object") == true }
        c.path = try temp("notext.jsonl", "{\"body\": \"x\"}\n")
        #expect { try TokenSource.load(c) } throws: { ($0 as? DataError)?.code == .malformed }
        #expect { try BatchSampler(source: .stream([1, 2, 3]), seqLen: 8, batchSize: 1, accumulation: 1, seed: 0) } throws: {
            ($0 as? DataError)?.code == .tooShort
        }
    }

    @Test func tokenFileReplaysInOrder() throws {
        var w = SafeTensorsWriter()
        let tokens = (0..<(3 * 2 * 2 * 5)).map { Int32($0) }
        w.add("tokens", shape: [3, 2, 2, 5], int32s: tokens)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-tokens-\(UUID().uuidString).safetensors")
        try w.write(to: url)
        var c = DataConfig()
        c.source = "tokens"
        c.path = url.path
        c.seqLen = 4
        let s = try BatchSampler(source: try TokenSource.load(c), seqLen: 4, batchSize: 2, accumulation: 2, seed: 0)
        let b = s.batch(step: 1, micro: 1)
        #expect(b.inputs == [30, 31, 32, 33, 35, 36, 37, 38])
        #expect(b.targets == [31, 32, 33, 34, 36, 37, 38, 39])
        #expect { try BatchSampler(source: try TokenSource.load(c), seqLen: 4, batchSize: 3, accumulation: 2, seed: 0) } throws: {
            ($0 as? DataError)?.code == .mismatch
        }
    }
}

/// The data cursor: a sampler that continues from a checkpoint's (step, samples consumed) with
/// another global batch takes the same sample order from the same place.
@Test func theDataCursorContinuesTheSampleOrderWithAnotherGlobalBatch() throws {
    let tokens = (0..<4000).map { Int32($0) }
    let seqLen = 8, batch = 2
    // Reference: accumulation 6 (e.g. 3 ranks × 2) for 4 steps = 48 sequences in order.
    let a = try BatchSampler(source: .stream(tokens), seqLen: seqLen, batchSize: batch, accumulation: 6, seed: 5)
    var reference: [[Int32]] = []
    for step in 0..<4 { for micro in 0..<6 { let b = a.batch(step: step, micro: micro); for r in 0..<batch { reference.append(Array(b.inputs[(r * seqLen)..<((r + 1) * seqLen)])) } } }
    // Resumed after step 2 (24 sequences consumed) with accumulation 4 (2 ranks × 2): steps 2… continue at sample 24.
    let b = try BatchSampler(source: .stream(tokens), seqLen: seqLen, batchSize: batch, accumulation: 4, seed: 5)
    b.origin = (2, 24)
    #expect(b.position(step: 2) == 24 && b.position(step: 5) == 48)
    var continued: [[Int32]] = []
    for step in 2..<8 { for micro in 0..<4 { let m = b.batch(step: step, micro: micro); for r in 0..<batch { continued.append(Array(m.inputs[(r * seqLen)..<((r + 1) * seqLen)])) } } }
    #expect(Array(continued.prefix(24)) == Array(reference.suffix(24)))
    // No sample skipped or seen twice within the pass: 24 + 48 windows, all distinct.
    let all = Array(reference.prefix(24)) + continued
    #expect(Set(all.map { $0.map(String.init).joined(separator: ",") }).count == all.count)
}
