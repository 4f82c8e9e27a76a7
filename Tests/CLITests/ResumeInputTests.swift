import Checkpoint
import Foundation
import Testing
import ZeroTrainTestKit

/// What `--resume` does with checkpoints that are not what they should be: one line naming the
/// file, exit code 2, and nothing trained. Also the two defects this was written for: a flipped
/// byte in the optimizer state, and a finished job resumed.
@Suite(.serialized) struct ResumeInputTests {
    static func config(_ dir: URL, hidden: Int = 16, steps: Int = 4) -> String {
        """
        model: {num_layers: 1, hidden_size: \(hidden), num_attention_heads: 2, max_seq_len: 16}
        training: {total_steps: \(steps), micro_batch_size: 1, checkpoint_interval: 2, checkpoint_dir: "\(dir.appendingPathComponent("ck").path)"}
        data: {seq_len: 8}
        """
    }

    /// A trained run's checkpoint directory (steps 2 and 4) and its config file.
    func trained(_ dir: URL) throws -> (config: URL, checkpoints: URL) {
        let config = dir.appendingPathComponent("c.yaml")
        try CLI.write(Self.config(dir), to: config)
        let r = try CLI.run(["train", "--config", config.path])
        try #require(r.status == 0, "\(r.stderr)")
        return (config, dir.appendingPathComponent("ck"))
    }

    func expectExit2(_ args: [String], mentions texts: [String]) throws {
        let r = try CLI.run(args)
        #expect(r.status == 2, "exit \(r.status) for \(args): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "expected one line, got: \(r.stderr)")
        for t in texts { #expect(r.stderr.contains(t), "stderr lacks \(t): \(r.stderr)") }
        #expect(!r.stdout.contains("step "), "it trained: \(r.stdout)")
    }

    var shard: String { "step-00000004/shard-00000-of-00001.safetensors" }

    @Test func aMissingManifest() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (config, ck) = try trained(dir)
        try FileManager.default.removeItem(at: ck.appendingPathComponent("step-00000004/manifest.json"))
        try expectExit2(["train", "--config", config.path, "--resume", ck.appendingPathComponent("step-00000004").path],
                        mentions: ["has no manifest.json"])
    }

    @Test func aManifestFromAnotherModelConfig() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, ck) = try trained(dir)
        let other = dir.appendingPathComponent("other.yaml")
        try CLI.write(Self.config(dir, hidden: 32), to: other)
        try expectExit2(["train", "--config", other.path, "--resume", ck.path], mentions: ["was written for a different model config"])
        try expectExit2(["local", "--config", other.path, "--workers", "1", "--run-dir", dir.appendingPathComponent("run").path,
                         "--resume", ck.path], mentions: ["was written for a different model config"])
    }

    @Test func aShardOfTheWrongSize() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (config, ck) = try trained(dir)
        let file = ck.appendingPathComponent(shard)
        let data = try Data(contentsOf: file)
        try data.prefix(data.count - 100).write(to: file)
        try expectExit2(["train", "--config", config.path, "--resume", ck.path], mentions: [shard, "the manifest says"])
    }

    @Test func anUnknownFormatVersion() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (config, ck) = try trained(dir)
        let manifest = ck.appendingPathComponent("step-00000004/manifest.json")
        let text = try String(contentsOf: manifest, encoding: .utf8).replacingOccurrences(of: "\"format_version\" : 2", with: "\"format_version\" : 7")
        try CLI.write(text, to: manifest)
        try expectExit2(["train", "--config", config.path, "--resume", ck.path], mentions: ["format_version 7"])
    }

    @Test func resumeOnAnEmptyFolder() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("c.yaml")
        try CLI.write(Self.config(dir), to: config)
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try expectExit2(["train", "--config", config.path, "--resume", empty.path], mentions: [empty.path, "is not a checkpoint"])
        try expectExit2(["local", "--config", config.path, "--workers", "1", "--run-dir", dir.appendingPathComponent("run").path,
                         "--resume", empty.path], mentions: ["is not a checkpoint"])
    }

    /// A flipped byte in the optimizer state (exp_avg_sq, the shard's last tensor) is found on
    /// load and named, instead of training on from corrupted moments.
    @Test func aFlippedByteInTheOptimizerStateIsReported() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (config, ck) = try trained(dir)
        let file = ck.appendingPathComponent(shard)
        var data = try Data(contentsOf: file)
        data[data.count - 5] ^= 0x10
        try data.write(to: file)
        try expectExit2(["train", "--config", config.path, "--resume", ck.path], mentions: [shard, "CRC32C mismatch"])
        let verify = try CLI.run(["checkpoint", "verify", ck.path])
        #expect(verify.status == 2 && verify.stderr.contains(shard), "\(verify.stderr)")
    }

    /// Resuming from the final checkpoint of a finished job trains nothing more, says so, exits 0
    /// — in one process and on a cluster.
    @Test func aFinishedJobSaysSo() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (config, ck) = try trained(dir)
        let metrics = ck.appendingPathComponent("metrics.jsonl")
        let before = try String(contentsOf: metrics, encoding: .utf8)
        let again = try CLI.run(["train", "--config", config.path, "--resume", ck.path])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("the job has already finished: step 4 of 4"), "\(again.stdout)")
        #expect(try String(contentsOf: metrics, encoding: .utf8) == before)
        let run = dir.appendingPathComponent("run")
        let local = try CLI.run(["local", "--config", config.path, "--workers", "1", "--run-dir", run.path, "--resume", ck.path])
        #expect(local.status == 0, "\(local.stderr)")
        #expect(local.stdout.contains("the job has already finished: step 4 of 4"), "\(local.stdout)")
        let logged = (try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? ""
        #expect(logged.isEmpty, "it trained: \(logged)")
    }

    /// `--resume auto` takes the newest checkpoint that verifies, warning about a broken newer one.
    @Test func resumeAutoFallsBackToAnOlderCheckpoint() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, ck) = try trained(dir)
        var data = try Data(contentsOf: ck.appendingPathComponent(shard))
        data[data.count / 2] ^= 0x01
        try data.write(to: ck.appendingPathComponent(shard))
        let longer = dir.appendingPathComponent("longer.yaml")
        try CLI.write(Self.config(dir, steps: 6), to: longer)
        let r = try CLI.run(["train", "--config", longer.path, "--resume", "auto"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("--resume auto: ") && r.stdout.contains("step-00000004"), "\(r.stdout)")
        #expect(r.stdout.contains("resumed at step 2"), "\(r.stdout)")
    }
}
