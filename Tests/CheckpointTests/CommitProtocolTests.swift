import Checkpoint
import Foundation
import Testing

/// The commit protocol: pending folders are never checkpoints, `latest` moves atomically to the
/// new step, `keep` prunes, stale pending folders of earlier steps go.
@Suite struct CommitProtocolTests {
    let fm = FileManager.default

    @Test func aPendingFolderWithoutManifestIsNeverACheckpoint() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir)
        let state = ShardFixture.state(count: 64, salt: 2)
        try ShardFixture.save(state, store: store, step: 10, ranks: 2)
        // Step 20's shards are written but the commit never happens (a crash).
        _ = try ShardFixture.writeShards(state, store: store, step: 20, ranks: 2)
        #expect(fm.fileExists(atPath: store.pendingFolder(step: 20).path))
        #expect(try CheckpointStore.resolve(dir).lastPathComponent == "step-00000010")
        #expect(store.checkpoints().map(\.lastPathComponent) == ["step-00000010"])
        #expect(try store.latestVerified(as: ShardFixture.Config.self, warn: { Issue.record("warned: \($0)") })?.lastPathComponent == "step-00000010")
        #expect { try CheckpointStore.resolve(store.pendingFolder(step: 20)) } throws: { e in
            guard let e = e as? CheckpointError else { return false }
            return e.code == .incomplete && e.kind == .badInput
                && e.message == "\(store.pendingFolder(step: 20).path) has no manifest.json: not a complete checkpoint (an interrupted save leaves step-N.tmp folders, which are never used)"
        }
        // Even a step folder that lost its manifest is not one.
        try fm.removeItem(at: store.folder(step: 10).appendingPathComponent("manifest.json"))
        #expect(store.checkpoints().isEmpty)
        #expect(throws: CheckpointError.self) { try CheckpointStore.resolve(dir) }
        #expect(try store.latestVerified(as: ShardFixture.Config.self, warn: { _ in }) == nil)
    }

    @Test func commitReplacesLatestAtomicallyAndWritesTheManifestLast() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir)
        let state = ShardFixture.state(count: 64, salt: 2)
        try ShardFixture.save(state, store: store, step: 1, ranks: 2)
        #expect(try String(contentsOf: dir.appendingPathComponent("latest"), encoding: .utf8) == "step-00000001\n")
        // An abandoned attempt at step 2 with three ranks left a shard behind: not part of the checkpoint.
        _ = try ShardFixture.writeShards(state, store: store, step: 2, ranks: 3)
        let files = try ShardFixture.writeShards(state, store: store, step: 2, ranks: 2)
        // Before the commit: no manifest in the pending folder, latest unchanged.
        #expect(!fm.fileExists(atPath: store.pendingFolder(step: 2).appendingPathComponent("manifest.json").path))
        #expect(try CheckpointStore.resolve(dir).lastPathComponent == "step-00000001")
        let folder = try store.commit(ShardFixture.manifest(step: 2, ranks: 2, count: 64, files: files), keep: 3)
        #expect(folder.lastPathComponent == "step-00000002" && !fm.fileExists(atPath: store.pendingFolder(step: 2).path))
        #expect(try String(contentsOf: dir.appendingPathComponent("latest"), encoding: .utf8) == "step-00000002\n")
        #expect(!fm.fileExists(atPath: dir.appendingPathComponent("latest.tmp").path))
        #expect(try CheckpointStore.resolve(dir).path == folder.path)
        #expect(Set(try fm.contentsOfDirectory(atPath: folder.path)) == ["manifest.json", files[0].name, files[1].name])
        // Committing the same step again replaces the folder.
        let again = try ShardFixture.writeShards(ShardFixture.state(count: 64, salt: 3), store: store, step: 2, ranks: 2)
        try store.commit(ShardFixture.manifest(step: 2, ranks: 2, count: 64, files: again), keep: 3)
        let reader = try CheckpointReader<ShardFixture.Config>(dir)
        #expect(try ShardFixture.read(reader, .parameters, 0..<64, pieces: 1) == ShardFixture.state(count: 64, salt: 3).bits(.parameters, 0..<64))
        #expect(store.checkpoints().map(\.lastPathComponent) == ["step-00000002", "step-00000001"])
    }

    @Test func theManifestIsSnakeCaseSortedAndPretty() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let folder = try ShardFixture.save(ShardFixture.state(count: 8, salt: 1), store: CheckpointStore(directory: dir), step: 3, ranks: 2)
        let text = try String(contentsOf: folder.appendingPathComponent("manifest.json"), encoding: .utf8)
        for key in ["format_version", "world_size", "zero_stage", "data_cursor", "samples_consumed", "global_batch", "peak_lr", "warmup_steps",
                    "total_steps", "num_cycles", "next_lr", "skipped_steps", "block_bytes", "block_crc32c", "data_offsets", "exp_avg_sq"] {
            #expect(text.contains("\"\(key)\" : "), "manifest lacks \(key)")
        }
        #expect(text.hasPrefix("{\n  \"config\" : {"))
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        #expect(object["format_version"] as? Int == 2 && object["step"] as? Int == 3 && object["skipped_steps"] as? Int == 1)
    }

    @Test func keepPrunesOlderFoldersAndStalePendingOnesBelowTheStep() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir)
        let state = ShardFixture.state(count: 16, salt: 4)
        _ = try ShardFixture.writeShards(state, store: store, step: 3, ranks: 2)      // stale: below the next commit
        _ = try ShardFixture.writeShards(state, store: store, step: 99, ranks: 2)     // above it: another save in progress
        for step in [1, 2, 4, 5, 6] { try ShardFixture.save(state, store: store, step: step, ranks: 2, keep: 3) }
        #expect(store.checkpoints().map(\.lastPathComponent) == ["step-00000006", "step-00000005", "step-00000004"])
        #expect(!fm.fileExists(atPath: store.pendingFolder(step: 3).path))
        #expect(fm.fileExists(atPath: store.pendingFolder(step: 99).path))
        // keep 1 never deletes the new one, even when an older step is committed after a newer one.
        try ShardFixture.save(state, store: store, step: 2, ranks: 2, keep: 1)
        #expect(store.checkpoints().map(\.lastPathComponent) == ["step-00000002"])
        #expect(throws: CheckpointError.self) { try ShardFixture.save(state, store: store, step: 7, ranks: 2, keep: 0) }
    }

    @Test func commitRefusesAMissingOrWrongSizedFile() throws {
        let dir = ShardFixture.tempDir()
        defer { try? fm.removeItem(at: dir) }
        let store = CheckpointStore(directory: dir)
        var files = try ShardFixture.writeShards(ShardFixture.state(count: 16, salt: 4), store: store, step: 5, ranks: 2)
        files[1].bytes += 4
        #expect { try store.commit(ShardFixture.manifest(step: 5, ranks: 2, count: 16, files: files), keep: 2) } throws: {
            ($0 as? CheckpointError)?.code == .corrupted && "\($0)".contains("shard-00001-of-00002.safetensors is \(files[1].bytes - 4) bytes, the manifest says \(files[1].bytes)")
        }
        try fm.removeItem(at: store.pendingFolder(step: 5).appendingPathComponent(files[0].name))
        #expect { try store.commit(ShardFixture.manifest(step: 5, ranks: 2, count: 16, files: files), keep: 2) } throws: {
            ($0 as? CheckpointError)?.code == .incomplete
        }
        #expect(store.checkpoints().isEmpty && !fm.fileExists(atPath: dir.appendingPathComponent("latest").path))
    }
}
