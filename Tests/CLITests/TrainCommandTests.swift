import Foundation
import ZeroTrainTestKit
import Testing

/// `zerotrain train`, `generate` and `grads` as real processes.
@Suite(.serialized) struct TrainCommandTests {
    struct Metric: Decodable, Equatable { let step: Int; let loss: Float; let grad_norm: Double }

    static func config(_ dir: URL, steps: Int) -> String {
        """
        model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, max_seq_len: 64, dropout: 0.1}
        training: {lr: 0.003, warmup_steps: 10, total_steps: \(steps), micro_batch_size: 4, gradient_accumulation_steps: 2,
                   threads: 1, checkpoint_interval: 25, checkpoint_dir: "\(dir.path)", log_interval: 1}
        data: {seq_len: 32}
        """
    }

    /// Last record of each step (a resumed run re-logs the steps after its checkpoint).
    static func metrics(_ dir: URL) throws -> [Metric] {
        let text = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var byStep: [Int: Metric] = [:]
        for line in text.split(separator: "\n") {
            let m = try JSONDecoder().decode(Metric.self, from: Data(line.utf8))
            byStep[m.step] = m
        }
        return byStep.keys.sorted().map { byStep[$0]! }
    }

    @Test func killedRunResumesBitIdentically() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let steps = 300
        let fullDir = root.appendingPathComponent("full"), killedDir = root.appendingPathComponent("killed")
        try CLI.write(Self.config(fullDir, steps: steps), to: root.appendingPathComponent("full.yaml"))
        try CLI.write(Self.config(killedDir, steps: steps), to: root.appendingPathComponent("killed.yaml"))
        let full = try CLI.run(["train", "--config", root.appendingPathComponent("full.yaml").path])
        #expect(full.status == 0, "\(full.stderr)")
        let expected = try Self.metrics(fullDir)
        #expect(expected.count == steps)
        #expect(expected.last!.loss < expected.first!.loss - 1, "loss should fall clearly: \(expected.first!.loss) → \(expected.last!.loss)")

        let p = try CLI.start(["train", "--config", root.appendingPathComponent("killed.yaml").path])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let checkpoint = killedDir.appendingPathComponent("step-00000050/manifest.json").path
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: checkpoint) && p.isRunning && Date() < deadline { usleep(2_000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal, "the run finished before it could be killed")

        let resumed = try CLI.run(["train", "--config", root.appendingPathComponent("killed.yaml").path, "--resume", killedDir.path])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed at step"))
        #expect(try Self.metrics(killedDir) == expected)
    }

    @Test func sigtermCheckpointsAndExits() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("run")
        try CLI.write(Self.config(dir, steps: 100_000), to: root.appendingPathComponent("c.yaml"))
        let log = root.appendingPathComponent("stdout")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let out = try FileHandle(forWritingTo: log)
        let p = try CLI.start(["train", "--config", root.appendingPathComponent("c.yaml").path], stdout: out)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("latest").path) && Date() < deadline { usleep(5_000) }
        kill(p.processIdentifier, SIGTERM)
        CLI.wait(for: [p], timeout: 30)
        #expect(!p.isRunning, "SIGTERM did not stop the run")
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(p.terminationStatus == 130)
        try out.close()
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.contains("stopped at step"))
        let latest = try String(contentsOf: dir.appendingPathComponent("latest"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(latest).appendingPathComponent("manifest.json").path))
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(latest).appendingPathComponent("shard-00000-of-00001.safetensors").path))
    }

    @Test func trainsOnATextFileAndGenerates() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let text = String(repeating: "the cat sat on the mat. the dog sat on the log. ", count: 200)
        try CLI.write(text, to: root.appendingPathComponent("corpus.txt"))
        let dir = root.appendingPathComponent("run")
        try CLI.write(Self.config(dir, steps: 120), to: root.appendingPathComponent("c.yaml"))
        let r = try CLI.run(["train", "--config", root.appendingPathComponent("c.yaml").path, "--data", root.appendingPathComponent("corpus.txt").path])
        #expect(r.status == 0, "\(r.stderr)")
        let m = try Self.metrics(dir)
        #expect(m.last!.loss < 0.5 * m.first!.loss, "loss \(m.first!.loss) → \(m.last!.loss)")
        let g = try CLI.run(["generate", "--checkpoint", dir.path, "--prompt", "the cat", "--max-new-tokens", "20", "--temperature", "0"])
        #expect(g.status == 0, "\(g.stderr)")
        #expect(g.stdout.hasPrefix("the cat") && g.stdout.utf8.count >= 20)
    }

    @Test func gradsCommandWritesTheReferenceLayout() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ref = CLI.fixtures.appendingPathComponent("reference/moe")
        let out = root.appendingPathComponent("grads.safetensors")
        let r = try CLI.run(["grads", "--model", ref.path, "--batch", ref.appendingPathComponent("batch.safetensors").path, "--out", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("loss 4.33709"))
        let data = try Data(contentsOf: out)
        let n = Int(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        let refData = try Data(contentsOf: ref.appendingPathComponent("expected.safetensors"))
        let rn = Int(refData.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let refHeader = try JSONSerialization.jsonObject(with: refData.subdata(in: 8..<(8 + rn))) as! [String: Any]
        #expect(Set(header.keys.filter { $0 != "__metadata__" }) == Set(refHeader.keys.filter { $0 != "__metadata__" }))
    }

    /// `plan` sizes the config's own `device:` budget when no device option is given.
    @Test func planUsesTheConfigsDeviceBudget() throws {
        let config = CLI.repo.appendingPathComponent("configs/tiny-zero3.yaml").path
        let r = try CLI.run(["plan", "--config", config, "--devices", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let input = plan["input"] as! [String: Any]
        #expect(input["deviceCapacity"] as? Int == 2 << 20)
        let rows = plan["rows"] as! [[String: Any]]
        let fits = { (stage: Int, optimizer: String) in
            rows.first { ($0["option"] as! [String: Any])["stage"] as? Int == stage
                && ($0["option"] as! [String: Any])["optimizer"] as? String == optimizer
                && ($0["option"] as! [String: Any])["params"] as? String == "none" }?["fits"] as? Bool
        }
        #expect(fits(0, "none") == false && fits(3, "host") == true)
        let overridden = try CLI.run(["plan", "--config", config, "--devices", "2", "--profile", "a100-40g", "--json"])
        let big = try JSONSerialization.jsonObject(with: Data(overridden.stdout.utf8)) as! [String: Any]
        #expect((big["input"] as! [String: Any])["deviceCapacity"] as? Int == 40 << 30)
    }
}
