import Foundation
import Testing
import ZeroTrainTestKit

/// A checkpoint written by N workers at ZeRO stage S resumes on M workers at stage S′, reading its
/// shards resharded, with the data position: with the global batch kept (ranks × accumulation ×
/// micro-batch = 12 sequences throughout), every step after the resume has the loss of the
/// uninterrupted run — exactly on the same topology, within 1e-5 relative after resharding.
@Suite(.serialized) struct ReshardResumeTests {
    static func config(workers: Int, stage: Int) -> String {
        """
        model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
        training: {lr: 0.003, warmup_steps: 5, total_steps: 20, micro_batch_size: 2, gradient_accumulation_steps: \(12 / (2 * workers)), threads: 1, checkpoint_interval: 10, log_interval: 5}
        data: {seq_len: 32}
        cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000, divergence_check_interval: 0, bucket_mb: 0.01}
        zero: {stage: \(stage), param_persistence_threshold: 0}
        """
    }

    /// Runs `zerotrain local` (optionally resuming) and returns the run directory and each step's last loss.
    static func run(_ root: URL, _ name: String, workers: Int, stage: Int, resume: URL? = nil) throws -> (URL, [Int: Float]) {
        let file = root.appendingPathComponent("\(name).yaml")
        try CLI.write(config(workers: workers, stage: stage), to: file)
        let dir = root.appendingPathComponent(name)
        var args = ["local", "--config", file.path, "--workers", String(workers), "--run-dir", dir.path]
        if let resume { args += ["--resume", resume.path] }
        let r = try CLI.run(args)
        try #require(r.status == 0, "\(name): \(r.stderr)")
        if resume != nil { #expect(r.stdout.contains("from \(resume!.path) at step 10"), "\(r.stdout)") }
        return (dir, try RecoveryTests.losses(dir))
    }

    @Test(arguments: [
        // (saved: workers, stage) → (resumed: workers, stage)
        (2, 3, 3, 1),   // 2 → 3 workers, stage 3 saved, stage 1 loaded
        (3, 1, 2, 3),   // 3 → 2, stage 1 saved, stage 3 loaded
        (2, 2, 1, 0),   // 2 → 1, stage 2 saved, stage 0 loaded
        (2, 2, 2, 2),   // the same topology: exact
    ])
    func resumeElsewhereEqualsTheUninterruptedRun(saved: (Int, Int, Int, Int)) throws {
        let (w0, s0, w1, s1) = saved
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (dir, reference) = try Self.run(root, "saved", workers: w0, stage: s0)
        #expect(reference.count == 20)
        let (_, resumed) = try Self.run(root, "resumed", workers: w1, stage: s1, resume: dir.appendingPathComponent("checkpoints/step-00000010"))
        #expect(Set(resumed.keys) == Set(10..<20))
        for step in 10..<20 {
            let (x, y) = (resumed[step] ?? .nan, reference[step]!)
            if (w0, s0) == (w1, s1) {
                #expect(x == y, "step \(step): \(x) vs \(y) (same topology: exact)")
            } else {
                #expect(abs(x - y) <= 1e-5 * abs(y), "step \(step): \(x) vs \(y)")
            }
        }
    }
}
