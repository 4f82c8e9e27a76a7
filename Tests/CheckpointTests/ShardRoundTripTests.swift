import Checkpoint
import Common
import Foundation
import Testing

/// A checkpoint written by two ranks reads back, in any range and in any number of pieces, the
/// same bits; a small read touches only the blocks that hold it.
@Suite struct ShardRoundTripTests {
    @Test(arguments: [1, 2, 3, 5])
    func anyRangeReadsBackBitForBit(pieces: Int) throws {
        let dir = ShardFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = ShardFixture.state(count: 1001, salt: 11)
        let store = CheckpointStore(directory: dir)
        let folder = try ShardFixture.save(state, store: store, step: 200, ranks: 2)
        #expect(folder.lastPathComponent == "step-00000200")
        let reader = try CheckpointReader<ShardFixture.Config>(dir)
        #expect(reader.folder.path == folder.path && reader.elementCount == 1001)
        #expect(reader.manifest.step == 200 && reader.manifest.worldSize == 2 && reader.manifest.config == ShardFixture.Config(name: "c200"))
        for range in [0..<1001, 0..<1, 500..<501, 499..<502, 3..<998, 1000..<1001, 10..<10] {
            for t in ShardTensor.allCases {
                #expect(try ShardFixture.read(reader, t, range, pieces: pieces) == state.bits(t, range), "\(t) \(range)")
            }
        }
        try reader.verify()
    }

    /// The shard file is a safetensors file the existing reader accepts, with the documented metadata.
    @Test func aShardIsAValidSafetensorsFile() throws {
        let dir = ShardFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = ShardFixture.state(count: 10, salt: 3)
        let files = try ShardFixture.writeShards(state, store: CheckpointStore(directory: dir), step: 4, ranks: 2)
        #expect(files.map(\.name) == ["shard-00000-of-00002.safetensors", "shard-00001-of-00002.safetensors"])
        let url = CheckpointStore(directory: dir).pendingFolder(step: 4).appendingPathComponent(files[1].name)
        let file = try SafeTensorsFile(contentsOf: url)
        #expect(file.metadata["format"] == "zerotrain-shard" && file.metadata["rank"] == "1" && file.metadata["world_size"] == "2")
        #expect(file.metadata["start"] == "5" && file.metadata["count"] == "5" && file.metadata["step"] == "4")
        #expect(file.metadata["rng"]?.hasPrefix("philox4x32-10 counter-based") == true && file.metadata["rng"]?.hasSuffix("seed 7, step 4") == true)
        #expect(try file.floats("exp_avg").map(\.bitPattern) == state.bits(.expAvg, 5..<10))
        let bytes = try Data(contentsOf: url)
        #expect(files[1].bytes == bytes.count && files[1].crc32c == bytes.withUnsafeBytes { CRC32C.software($0) })
        #expect(files[1].blockBytes == CheckpointStore.blockBytes && files[1].blockCRC32C == [files[1].crc32c])
        let offset = files[1].dataOffsets!["exp_avg_sq"]!
        let v = bytes.withUnsafeBytes { raw in (0..<5).map { raw.loadUnaligned(fromByteOffset: offset + 4 * $0, as: UInt32.self) } }
        #expect(v == state.bits(.expAvgSq, 5..<10))
    }

    /// Shards of several blocks: every block has its CRC, the whole-file CRC matches a plain
    /// pass, and a small read pays for one block, not the file.
    @Test func aSmallReadReadsOnlyItsBlocks() throws {
        let dir = ShardFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let count = 6_000_000   // 24 MB per tensor: each shard file spans five 8-MiB blocks
        let state = ShardFixture.state(count: count, salt: 5)
        try ShardFixture.save(state, store: CheckpointStore(directory: dir), step: 1, ranks: 2)
        let reader = try CheckpointReader<ShardFixture.Config>(dir)
        let shard = reader.manifest.shards[1]
        let bytes = try Data(contentsOf: reader.folder.appendingPathComponent(shard.name))
        #expect(shard.crc32c == bytes.withUnsafeBytes { CRC32C.software($0) })
        #expect(shard.blockCRC32C!.count == (bytes.count + CheckpointStore.blockBytes - 1) / CheckpointStore.blockBytes)
        for (k, crc) in shard.blockCRC32C!.enumerated() {
            let block = bytes[(k * CheckpointStore.blockBytes)..<min(bytes.count, (k + 1) * CheckpointStore.blockBytes)]
            #expect(crc == block.withUnsafeBytes { CRC32C.software($0) }, "block \(k)")
        }
        // 1000 elements in the middle of rank 1's exp_avg: inside one block.
        let start = count / 2 + 1_000_000
        #expect(try ShardFixture.read(reader, .expAvg, start..<(start + 1000), pieces: 1) == state.bits(.expAvg, start..<(start + 1000)))
        #expect(reader.bytesRead == CheckpointStore.blockBytes)
        var none: Float = 0
        try reader.read(.expAvg, elements: start..<start, into: &none)
        #expect(reader.bytesRead == CheckpointStore.blockBytes, "an empty range reads nothing")
        // Across the two shards: one block of each.
        #expect(try ShardFixture.read(reader, .parameters, (count / 2 - 10)..<(count / 2 + 10), pieces: 1)
                == state.bits(.parameters, (count / 2 - 10)..<(count / 2 + 10)))
        #expect(reader.bytesRead == 3 * CheckpointStore.blockBytes)
    }

    @Test func aRangeOutsideTheBuffersIsAnError() throws {
        let dir = ShardFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        try ShardFixture.save(ShardFixture.state(count: 10, salt: 1), store: CheckpointStore(directory: dir), step: 1, ranks: 2)
        let reader = try CheckpointReader<ShardFixture.Config>(dir)
        var out = [Float](repeating: 0, count: 11)
        #expect { try out.withUnsafeMutableBufferPointer { try reader.read(.parameters, elements: 0..<11, into: $0.baseAddress!) } } throws: {
            ($0 as? CheckpointError)?.code == .invalidArgument
        }
    }
}
