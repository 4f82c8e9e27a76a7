import Checkpoint
import Foundation
import Testing

/// Damage is found and named: a flipped byte by the checksum of its block, a truncated shard by
/// its size at open, another format by its version; the store falls back to an older checkpoint.
@Suite struct CorruptionTests {
    let fm = FileManager.default

    func message(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    @Test func aFlippedByteFailsTheReadThatCoversItAndVerifyButNotOtherReads() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let count = 4_400_000   // shard 1 holds 2.2M elements per tensor: 26.4 MB, four blocks
        let state = ShardFixture.state(count: count, salt: 8)
        let folder = try ShardFixture.save(state, store: CheckpointStore(directory: dir), step: 200, ranks: 2)
        let reader = try CheckpointReader<ShardFixture.Config>(dir)
        let shard = reader.manifest.shards[1]
        let url = folder.appendingPathComponent(shard.name)
        // Element 1_000_000 of rank 1's exp_avg_sq lies in block 2 (bytes 16777216..<25165824).
        let element = 1_000_000
        let offset = shard.dataOffsets!["exp_avg_sq"]! + 4 * element
        let block = offset / CheckpointStore.blockBytes
        #expect(block == 2)
        try ShardFixture.flipByte(url, at: offset)
        let blockRange = (block * CheckpointStore.blockBytes)..<min(shard.bytes, (block + 1) * CheckpointStore.blockBytes)
        let expected = String(format: "0x%08x", shard.blockCRC32C![block])
        let global = count / 2 + element
        let readError = message { _ = try ShardFixture.read(reader, .expAvgSq, (global - 5)..<(global + 5), pieces: 1) }
        #expect(readError?.hasPrefix("\(url.path): CRC32C mismatch in bytes \(blockRange.lowerBound)..<\(blockRange.upperBound): expected \(expected), found 0x") == true,
                "\(readError ?? "no error")")
        // Ranges not in that block read fine: rank 1's parameters, rank 0 entirely.
        #expect(try ShardFixture.read(reader, .parameters, (count / 2)..<(count / 2 + 100), pieces: 1) == state.bits(.parameters, (count / 2)..<(count / 2 + 100)))
        #expect(try ShardFixture.read(reader, .expAvgSq, 0..<(count / 2), pieces: 2) == state.bits(.expAvgSq, 0..<(count / 2)))
        let verifyError = message { try reader.verify() }
        #expect(verifyError?.hasPrefix("\(url.path): CRC32C mismatch in bytes \(blockRange.lowerBound)..<\(blockRange.upperBound): expected \(expected), found 0x") == true,
                "\(verifyError ?? "no error")")
        #expect(throws: CheckpointError.self) { try reader.verify() }
        do { try reader.verify() } catch let e as CheckpointError { #expect(e.code == .corrupted && e.kind == .badInput) }
    }

    @Test func aFlippedHeaderByteIsCaughtByVerify() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let folder = try ShardFixture.save(ShardFixture.state(count: 100, salt: 8), store: CheckpointStore(directory: dir), step: 2, ranks: 2)
        try ShardFixture.flipByte(folder.appendingPathComponent("shard-00000-of-00002.safetensors"), at: 20)
        let reader = try CheckpointReader<ShardFixture.Config>(dir)
        #expect(message { try reader.verify() }?.contains("shard-00000-of-00002.safetensors: CRC32C mismatch in bytes 0..<") == true)
    }

    @Test func aTruncatedShardIsAWrongSizeAtOpen() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let folder = try ShardFixture.save(ShardFixture.state(count: 100, salt: 8), store: CheckpointStore(directory: dir), step: 2, ranks: 2)
        let url = folder.appendingPathComponent("shard-00001-of-00002.safetensors")
        let size = try Data(contentsOf: url).count
        try Data(try Data(contentsOf: url).prefix(size - 7)).write(to: url)
        let e = message { _ = try CheckpointReader<ShardFixture.Config>(dir) }
        #expect(e == "\(url.path) is \(size - 7) bytes, the manifest says \(size) (truncated or replaced)")
    }

    @Test func anUnknownFormatVersionIsRejectedFirst() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let folder = try ShardFixture.save(ShardFixture.state(count: 10, salt: 8), store: CheckpointStore(directory: dir), step: 2, ranks: 2)
        let url = folder.appendingPathComponent("manifest.json")
        // Version 7 with fields this build does not know and without ones it needs: the version is what is reported.
        try Data(#"{"format_version": 7, "shards_v7": []}"#.utf8).write(to: url)
        #expect { _ = try CheckpointReader<ShardFixture.Config>(folder) } throws: { e in
            guard let e = e as? CheckpointError else { return false }
            return e.code == .unsupportedVersion && e.kind == .badInput
                && e.message == "\(url.path) has format_version 7; this zerotrain reads version 2"
        }
        // Decoding the type directly (JSONDecoder) rejects it by version too.
        #expect { _ = try JSONDecoder().decode(CheckpointManifest<ShardFixture.Config>.self, from: Data(#"{"format_version": 1}"#.utf8)) } throws: {
            ($0 as? CheckpointError)?.code == .unsupportedVersion
        }
        try Data(#"{"format_version": 2, "step": 2}"#.utf8).write(to: url)
        #expect(message { _ = try CheckpointReader<ShardFixture.Config>(folder) }?.contains("missing field world_size") == true)
    }

    @Test func aMissingManifestOrAnEmptyDirectoryIsAnError() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        #expect { _ = try CheckpointReader<ShardFixture.Config>(dir) } throws: { e in
            guard let e = e as? CheckpointError else { return false }
            return e.code == .notFound && e.kind == .badInput && e.message.contains(dir.path)
        }
        let folder = try ShardFixture.save(ShardFixture.state(count: 10, salt: 8), store: CheckpointStore(directory: dir), step: 2, ranks: 2)
        try fm.removeItem(at: folder.appendingPathComponent("manifest.json"))
        #expect(message { _ = try CheckpointReader<ShardFixture.Config>(dir) }
                == "\(folder.path) has no manifest.json: not a complete checkpoint (an interrupted save leaves step-N.tmp folders, which are never used)")
        #expect(message { _ = try CheckpointReader<ShardFixture.Config>(folder) }?.hasPrefix("\(folder.path) has no manifest.json") == true)
    }

    @Test func latestVerifiedFallsBackToAnOlderCheckpointWithAWarning() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir)
        let state = ShardFixture.state(count: 100, salt: 8)
        try ShardFixture.save(state, store: store, step: 1, ranks: 2)
        try ShardFixture.save(state, store: store, step: 2, ranks: 3)
        let broken = store.folder(step: 2)
        try ShardFixture.flipByte(broken.appendingPathComponent("shard-00002-of-00003.safetensors"), at: 300)
        var warnings: [String] = []
        let found = try store.latestVerified(as: ShardFixture.Config.self) { warnings.append($0) }
        #expect(found?.lastPathComponent == "step-00000001")
        #expect(warnings.count == 1 && warnings[0].contains(broken.path) && warnings[0].contains("shard-00002-of-00003.safetensors: CRC32C mismatch"),
                "\(warnings)")
        #expect(!warnings[0].contains("\n"))
        // Nothing verifies: an error, not a fresh start.
        try ShardFixture.flipByte(store.folder(step: 1).appendingPathComponent("shard-00000-of-00002.safetensors"), at: 300)
        #expect { _ = try store.latestVerified(as: ShardFixture.Config.self) { _ in } } throws: { ($0 as? CheckpointError)?.code == .corrupted }
        let empty = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: empty) }
        #expect(try CheckpointStore(directory: empty).latestVerified(as: ShardFixture.Config.self) { _ in } == nil)
    }
}
