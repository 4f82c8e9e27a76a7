import Foundation
import Model
import Tensor
import Testing
import Training

/// A run stopped and resumed from its checkpoint reproduces the uninterrupted run bit for bit.
@Suite struct ResumeTests {
    static func config(dir: String, dropout: Double = 0.1, moe: Bool = false) throws -> TrainConfig {
        var c = try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
            training: {lr: 0.01, warmup_steps: 2, total_steps: 6, micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 2, checkpoint_interval: 3}
            data: {seq_len: 16}
            """)
        c.model.dropout = dropout
        if moe { c.model.moeConfig = .init(numExperts: 4, topK: 2) }
        c.training.checkpointDir = dir
        return c
    }

    @Test(arguments: [false, true])
    func resumedRunEqualsUninterruptedRun(moe: Bool) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("zt-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let full = try Trainer(config: try Self.config(dir: root.appendingPathComponent("a").path, moe: moe))
        var expected: [StepMetrics] = []
        while !full.isFinished { expected.append(try full.trainStep()) }

        let cfg = try Self.config(dir: root.appendingPathComponent("b").path, moe: moe)
        let first = try Trainer(config: cfg)
        for _ in 0..<3 { _ = try first.trainStep() }
        try first.saveCheckpoint(in: root.appendingPathComponent("b"))
        let second = try Trainer(config: cfg)
        try second.resume(from: root.appendingPathComponent("b"))
        #expect(second.step == 3)
        var resumed: [StepMetrics] = []
        while !second.isFinished { resumed.append(try second.trainStep()) }
        #expect(resumed.map(\.loss) == expected[3...].map(\.loss))
        #expect(resumed.map(\.gradNorm) == expected[3...].map(\.gradNorm))
        #expect(second.model.parameters.toArray() == full.model.parameters.toArray())
    }

    @Test func resumeRejectsADifferentModel() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("zt-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let cfg = try Self.config(dir: root.path)
        let t = try Trainer(config: cfg)
        _ = try t.trainStep()
        try t.saveCheckpoint(in: root)
        var other = cfg
        other.model.hiddenSize = 64
        let u = try Trainer(config: other)
        #expect(throws: TrainingError.self) { try u.resume(from: root) }
    }
}
