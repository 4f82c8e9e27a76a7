import Checkpoint
import Foundation
import Testing

@Suite struct SafeTensorsTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/reference")

    @Test func roundTripWithReferenceWriterLayout() throws {
        var w = SafeTensorsWriter()
        w.add("b.weight", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        w.add("a.scalar", shape: [], floats: [7])
        w.add("tokens", shape: [2, 2], int32s: [1, -2, 3, 4])
        w.add("empty", shape: [0, 4], floats: [])
        let data = w.serialized()
        let headerLength = data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLength % 8 == 0)
        let f = try SafeTensorsFile(data: data)
        #expect(try f.floats("b.weight") == [1, 2, 3, 4, 5, 6])
        #expect(try f.floats("a.scalar") == [7])
        #expect(try f.int32s("tokens") == [1, -2, 3, 4])
        #expect(f.entry("empty")?.shape == [0, 4])
        #expect(f.metadata["format"] == "pt")
        // F32 tensors come before I32, each group by name.
        #expect(f.entries.map(\.name) == ["a.scalar", "b.weight", "empty", "tokens"])
    }

    @Test func readsTheReferenceFiles() throws {
        let f = try SafeTensorsFile(contentsOf: Self.fixtures.appendingPathComponent("dense/model.safetensors"))
        #expect(f.entry("model.embed_tokens.weight")?.shape == [64, 32])
        #expect(try f.floats("model.norm.weight").count == 32)
    }

    @Test func readsBF16AndF16() throws {
        // Hand-built file: BF16 [1.0, -2.0] and F16 [0.5, 65504] (max half), 2 + 2 elements.
        let header = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#
        var d = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: Array(header.utf8))
        for v: UInt16 in [0x3F80, 0xC000, 0x3800, 0x7BFF] { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        let f = try SafeTensorsFile(data: d)
        #expect(try f.floats("b") == [1, -2])
        #expect(try f.floats("h") == [0.5, 65504])
    }

    static func corrupt(_ edit: (inout Data) -> Void) -> Data {
        var w = SafeTensorsWriter()
        w.add("x", shape: [4], floats: [1, 2, 3, 4])
        var d = w.serialized()
        edit(&d)
        return d
    }

    @Test(arguments: 0..<6)
    func malformedFilesAreErrorsNotCrashes(_ which: Int) {
        let cases: [Data] = [
            Data([1, 2, 3]),                                        // shorter than the length prefix
            Self.corrupt { $0 = $0.prefix($0.count - 3) },         // truncated data
            Self.corrupt { $0.append(0) },                          // trailing bytes
            Self.corrupt { $0.replaceSubrange(0..<8, with: [255, 255, 255, 255, 0, 0, 0, 0]) },  // huge header
            Self.corrupt { $0[9] = UInt8(ascii: "!") },            // broken JSON
            Self.corrupt { d in
                let s = String(decoding: d, as: UTF8.self).replacingOccurrences(of: "[4]", with: "[5]")
                d = Data(s.utf8)
            },                                                      // shape does not match byte count
        ]
        #expect(throws: CheckpointError.self) { try SafeTensorsFile(data: cases[which]) }
    }

    @Test func shapeMismatchAndMissingTensorAreNamed() throws {
        let f = try SafeTensorsFile(data: Self.corrupt { _ in })
        var out = [Float](repeating: 0, count: 4)
        #expect { try out.withUnsafeMutableBufferPointer { try f.read("x", into: $0, shape: [2, 2]) } } throws: {
            ($0 as? CheckpointError)?.code == .shapeMismatch
        }
        #expect { try f.floats("y") } throws: { ($0 as? CheckpointError)?.message.contains("tensor y is missing") == true }
    }
}
