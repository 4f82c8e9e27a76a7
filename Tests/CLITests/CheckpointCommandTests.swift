import Checkpoint
import Foundation
import Testing
import Training
import ZeroTrainTestKit

/// `zerotrain checkpoint verify|info` on checkpoints written with ShardWriter + commit: a good one
/// passes (exit 0), every kind of damage is one line naming the file and exit 2.
@Suite struct CheckpointCommandTests {
    /// A two-rank checkpoint of 3000 elements at step 200 in a new directory.
    static func checkpoint() throws -> (dir: URL, folder: URL) {
        let dir = CLI.tempDir()
        let store = CheckpointStore(directory: dir)
        let count = 3000, half = 1500
        let values = (0..<(3 * count)).map { Float($0) * 0.25 }
        var files: [CheckpointFile] = []
        try values.withUnsafeBufferPointer { all in
            for rank in 0..<2 {
                let start = rank * half
                func slice(_ k: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(rebasing: all[(k * count + start)..<(k * count + start + half)]) }
                files.append(try ShardWriter.write(into: store.pendingFolder(step: 200), rank: rank, worldSize: 2, start: start, step: 200, seed: 1234,
                                                   parameters: slice(0), expAvg: slice(1), expAvgSq: slice(2)))
            }
        }
        let manifest = CheckpointManifest(step: 200, worldSize: 2, zeroStage: 2, config: TrainConfig(),
                                          tensors: [TensorLayout(name: "flat", shape: [count], offset: 0)],
                                          dataCursor: DataCursor(samplesConsumed: 1600, globalBatch: 8, seed: 1234),
                                          schedule: ScheduleState(kind: "cosine", peakLR: 3e-4, warmupSteps: 10, totalSteps: 1000,
                                                                  numCycles: 0.5, nextLR: 2.5e-4),
                                          skippedSteps: 3, files: files)
        return (dir, try store.commit(manifest, keep: 2))
    }

    func expectExit2(_ args: [String], mentions text: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 2, "exit \(r.status) for \(args): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "expected one line, got: \(r.stderr)")
        #expect(r.stderr.hasPrefix("zerotrain: error: ") && r.stderr.contains(text), "stderr: \(r.stderr)")
    }

    @Test func verifyPassesOnAGoodCheckpoint() throws {
        let (dir, folder) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["checkpoint", "verify", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("ok: \(folder.path) (2 files, ") && r.stdout.contains("MB verified at"), "\(r.stdout)")
    }

    @Test func verifyNamesAFlippedByte() throws {
        let (dir, folder) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = folder.appendingPathComponent("shard-00001-of-00002.safetensors")
        var bytes = try Data(contentsOf: url)
        bytes[bytes.count - 100] ^= 0x01
        try bytes.write(to: url)
        try expectExit2(["checkpoint", "verify", dir.path], mentions: "\(url.path): CRC32C mismatch in bytes 0..<")
    }

    @Test func verifyNamesATruncatedShard() throws {
        let (dir, folder) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = folder.appendingPathComponent("shard-00000-of-00002.safetensors")
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 8).write(to: url)
        try expectExit2(["checkpoint", "verify", folder.path],
                        mentions: "\(url.path) is \(bytes.count - 8) bytes, the manifest says \(bytes.count) (truncated or replaced)")
    }

    @Test func verifyRejectsAnUnknownVersion() throws {
        let (dir, folder) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = folder.appendingPathComponent("manifest.json")
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "\"format_version\" : 2", with: "\"format_version\" : 7")
        try CLI.write(text, to: url)
        try expectExit2(["checkpoint", "verify", dir.path], mentions: "\(url.path) has format_version 7; this zerotrain reads version 2")
    }

    @Test func verifyRejectsAMissingManifest() throws {
        let (dir, folder) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.removeItem(at: folder.appendingPathComponent("manifest.json"))
        try expectExit2(["checkpoint", "verify", dir.path], mentions: "\(folder.path) has no manifest.json: not a complete checkpoint")
        try expectExit2(["checkpoint", "info", folder.path], mentions: "has no manifest.json")
    }

    @Test func infoPrintsTheStepAndTheFiles() throws {
        let (dir, folder) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["checkpoint", "info", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        for text in ["folder          \(folder.path)", "format version  2", "step            200", "world size      2", "ZeRO stage      2",
                     "3000 parameters", "1600 samples consumed, global batch 8", "next lr 0.00025", "skipped steps   3",
                     "shard-00000-of-00002.safetensors", "rank 1, elements 1500..<3000", "crc32c 0x"] {
            #expect(r.stdout.contains(text), "info lacks \"\(text)\": \(r.stdout)")
        }
        let j = try CLI.run(["checkpoint", "info", "--json", dir.path])
        #expect(j.status == 0, "\(j.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any]
        #expect(object?["step"] as? Int == 200 && object?["format_version"] as? Int == 2 && (object?["files"] as? [Any])?.count == 2)
    }
}
