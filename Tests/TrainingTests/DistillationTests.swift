import Foundation
import Testing
import Training
import ZeroTrainTestKit

/// `training.distillation` in the trainer: a teacher from a checkpoint, the combined loss, and
/// what must not change.
@Suite struct DistillationTests {
    static func config(_ extra: String = "", steps: Int = 4) throws -> TrainConfig {
        try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
            training: {lr: 0.01, warmup_steps: 1, total_steps: \(steps), micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1\(extra)}
            data: {seq_len: 16}
            """)
    }

    /// A checkpoint of the untrained student (step 0 weights) as a teacher.
    static func teacherCheckpoint(_ dir: URL) throws -> URL {
        var cfg = try config(steps: 1)
        cfg.training.checkpointDir = dir.appendingPathComponent("teacher").path
        let trainer = try Trainer(config: cfg)
        try trainer.saveCheckpoint(in: URL(fileURLWithPath: cfg.training.checkpointDir!))
        return URL(fileURLWithPath: cfg.training.checkpointDir!)
    }

    @Test func alphaZeroIsPlainTrainingBitForBit() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let teacher = try Self.teacherCheckpoint(dir)
        let plain = try Trainer(config: Self.config())
        let distilled = try Trainer(config: Self.config(", distillation: {teacher: \(teacher.path), temperature: 2, alpha: 0}"))
        #expect(distilled.teacher != nil)
        for _ in 0..<4 {
            let a = try plain.trainStep(), b = try distilled.trainStep()
            #expect(a.loss.bitPattern == b.loss.bitPattern && a.gradNorm.bitPattern == b.gradNorm.bitPattern)
        }
        #expect(plain.model.parameters.toArray() == distilled.model.parameters.toArray())
    }

    @Test func aTeacherEqualToTheStudentGivesNoDivergence() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let teacher = try Self.teacherCheckpoint(dir)
        // α = 1: the loss is T² · KL only; the student starts as the teacher, so KL is 0 and so is every gradient.
        let trainer = try Trainer(config: Self.config(", distillation: {teacher: \(teacher.path), temperature: 3, alpha: 1}"))
        let first = try trainer.trainStep()
        #expect(first.loss == 0 && first.gradNorm == 0)
        // With α = 0.5 and a real teacher the loss is the mix: between 0.5 · CE and CE + T²·KL terms, and it trains.
        let mixed = try Trainer(config: Self.config(", distillation: {teacher: \(teacher.path), temperature: 3, alpha: 0.5}", steps: 8))
        let plain = try Trainer(config: Self.config(steps: 8))
        let m0 = try mixed.trainStep(), p0 = try plain.trainStep()
        // At step 0 the KL term is 0 (same weights): the loss is exactly half the cross-entropy.
        #expect(abs(Double(m0.loss) - 0.5 * Double(p0.loss)) <= 1e-6 * Double(p0.loss))
        var last = m0
        for _ in 1..<8 { last = try mixed.trainStep() }
        #expect(last.loss.isFinite && last.loss < m0.loss)
    }

    /// Sharding the teacher needs the job's ranks: a lone trainer refuses `shard: true` as bad
    /// input (exit 2 from the CLI), and keeps the whole teacher by default.
    @Test func aShardedTeacherNeedsACluster() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let teacher = try Self.teacherCheckpoint(dir)
        do {
            _ = try Trainer(config: Self.config(", distillation: {teacher: \(teacher.path), temperature: 2, alpha: 0.5, shard: true}"))
            Issue.record("shard: true without a cluster was accepted")
        } catch let e as TrainingError {
            #expect(e.code == .badInput && e.message.contains("training.distillation.shard: true needs a cluster"), "\(e)")
        }
        let whole = try Trainer(config: Self.config(", distillation: {teacher: \(teacher.path), temperature: 2, alpha: 0.5}"))
        #expect(whole.teacher?.sharded == nil && whole.teacher?.model.parameters.count == whole.teacher?.model.table.count)
    }

    @Test func teacherLogitsInChunksEqualOneBlock() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let teacherDir = try Self.teacherCheckpoint(dir)
        let student = try Trainer(config: Self.config(steps: 3))
        for _ in 0..<3 { _ = try student.trainStep() }
        var d = DistillationConfig()
        d.teacher = teacherDir.path
        let whole = try Teacher(config: d, student: student.config.model, seqLen: 16, precision: .fp32, pool: student.pool, chunkRows: 1000)
        let chunked = try Teacher(config: d, student: student.config.model, seqLen: 16, precision: .fp32, pool: student.pool, chunkRows: 5)
        let batch = student.sampler.batch(step: 0, micro: 0)
        try student.model.forward(inputs: batch.inputs, targets: batch.targets, batch: 2, seqLen: 16)
        let logits = Array(student.model.logits)
        var sums: [Double] = []
        for teacher in [whole, chunked] {
            try teacher.forward(inputs: batch.inputs, batch: 2, seqLen: 16)
            sums.append(logits.withUnsafeBufferPointer { teacher.divergence(student: $0.baseAddress!, rows: 32, dLogits: nil, gradScale: 0) })
        }
        #expect(sums[0] > 0 && abs(sums[0] - sums[1]) <= 1e-5 * sums[0], "\(sums)")
    }
}
