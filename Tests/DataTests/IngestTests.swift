import Data
import Foundation
import Testing

/// A fresh directory under the temporary folder, removed by the caller.
func scratch() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-data-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func readAll(_ inputs: [String], _ configure: (inout IngestConfig) -> Void = { _ in }) throws -> ([Document], IngestStats) {
    var c = IngestConfig()
    configure(&c)
    let r = try DocumentReader(inputs: inputs, config: c)
    var docs: [Document] = []
    while let d = try r.nextDocument() { docs.append(d) }
    return (docs, r.stats)
}

@Suite struct IngestTests {
    static let records = (0..<300).map { "{\"id\": \($0), \"text\": \"record \($0) \\\"quoted\\\" caf\\u00e9 \\ud83c\\udf89\\nsecond line\", \"meta\": {\"a\": [1, 2.5e3, null, true]}}" }

    @Test(arguments: [Compression.none, .gzip, .zstd])
    func jsonlInEveryCompression(_ compression: Compression) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let name = ["none": "a.jsonl", "gzip": "a.jsonl.gz", "zstd": "a.jsonl.zst"][compression.rawValue]!
        let path = dir.appendingPathComponent(name).path
        try Data(try compression.compress(Array((Self.records.joined(separator: "\n") + "\n").utf8))).write(to: URL(fileURLWithPath: path))
        let (docs, stats) = try readAll([path])
        #expect(docs.count == 300 && stats.documents == 300)
        #expect(docs[7].text == "record 7 \"quoted\" café 🎉\nsecond line")
        #expect(docs[7].line == 8 && docs[7].source == path)
        #expect(docs[7].id == Document.stableId(source: path, line: 8))
        #expect(Set(docs.map(\.id)).count == 300)
    }

    @Test func concatenatedGzipMembersAndLargeInput() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Two members, each several MB of paragraphs (more than one read buffer).
        let para = String(repeating: "word ", count: 2000) + "\n\n"
        let part = Array(String(repeating: para, count: 500).utf8)
        let path = dir.appendingPathComponent("big.txt.gz").path
        try Data(try Compression.gzip.compress(part) + (try Compression.gzip.compress(part))).write(to: URL(fileURLWithPath: path))
        let (docs, stats) = try readAll([path]) { $0.textUnit = "paragraph" }
        #expect(docs.count == 1000)
        #expect(stats.bytes == 2 * part.count)
        #expect(docs[999].line == 1 + 999 * 2)
    }

    @Test func textUnitsAndDirectories() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try "one\ntwo\n\n\nthree\r\n".write(to: dir.appendingPathComponent("b.txt"), atomically: true, encoding: .utf8)
        try "{\"text\": \"j\"}\n".write(to: dir.appendingPathComponent("sub/a.jsonl"), atomically: true, encoding: .utf8)
        let (files, _) = try readAll([dir.path])
        #expect(files.map(\.text) == ["one\ntwo\n\n\nthree", "j"])
        let (paras, _) = try readAll([dir.appendingPathComponent("b.txt").path]) { $0.textUnit = "paragraph" }
        #expect(paras.map(\.text) == ["one\ntwo", "three"] && paras.map(\.line) == [1, 5])
        let (lines, _) = try readAll([dir.appendingPathComponent("b.txt").path]) { $0.textUnit = "line" }
        #expect(lines.map(\.text) == ["one", "two", "three"])
    }

    @Test func malformedLineNamesFileAndLine() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.jsonl").path
        try "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n{\"other\": 1}\n[1]\n{\"text\": \"fine\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try readAll([path]) } throws: { e in
            (e as? DataError)?.message.hasPrefix("\(path):2: invalid JSON (unterminated string)") == true
        }
        let (docs, stats) = try readAll([path]) { $0.skipBad = true }
        #expect(docs.map(\.text) == ["ok", "fine"])
        #expect(stats.badLines == 2 && stats.missingField == 1)
    }

    @Test func unknownCompressionIsAnError() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bz = dir.appendingPathComponent("a.jsonl.bz2").path
        try "x".write(toFile: bz, atomically: true, encoding: .utf8)
        #expect { try readAll([bz]) } throws: { ($0 as? DataError)?.message.contains("unknown compression format .bz2") == true }
        // xz content under a plain name.
        let xz = dir.appendingPathComponent("plain.txt").path
        try Data([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x00]).write(to: URL(fileURLWithPath: xz))
        #expect { try readAll([xz]) } throws: { ($0 as? DataError)?.message.contains("unknown compression format (xz") == true }
        // Corrupt gzip.
        let gz = dir.appendingPathComponent("c.txt.gz").path
        try Data([0x1F, 0x8B, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9]).write(to: URL(fileURLWithPath: gz))
        #expect { try readAll([gz]) } throws: { ($0 as? DataError)?.message.hasPrefix(gz) == true }
    }

    @Test func jsonlOutputRoundTrips() throws {
        let d = Document(id: "00ff", text: "tab\there \"q\" back\\slash \u{1} 東京\n", source: "/a \"b\".txt", line: 3)
        var out: [UInt8] = []
        d.appendJSONL(to: &out)
        let obj = try JSONSerialization.jsonObject(with: Data(out.dropLast())) as! [String: Any]
        #expect(obj["text"] as? String == d.text && obj["source"] as? String == d.source && obj["line"] as? Int == 3 && obj["id"] as? String == "00ff")
        let text = try out.dropLast().withUnsafeBytes { try JSONLine.stringField("text", in: $0) }
        #expect(text == d.text)
    }
}
