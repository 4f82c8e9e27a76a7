import Foundation
import Testing
import Training
import ZeroTrainTestKit

/// fp16's dynamic loss scale in the trainer: the loss is scaled before backward and the gradients
/// unscaled before clipping; an overflow skips the update, halves the scale and is no divergence;
/// the scale is part of the checkpointed state.
@Suite struct LossScalingTests {
    static func config(precision: String = "fp16", extra: String = "", maxSkipped: Int = 2) throws -> TrainConfig {
        try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
            training: {lr: 0.01, warmup_steps: 2, total_steps: 8, micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1, precision: \(precision)\(extra)}
            data: {seq_len: 16}
            fault_tolerance: {max_skipped_steps: \(maxSkipped)}
            """)
    }

    @Test func anOverflowSkipsTheUpdateHalvesTheScaleAndIsNoDivergence() throws {
        let trainer = try Trainer(config: Self.config(extra: ", loss_scale: 1024", maxSkipped: 1))
        // An inf in micro-batch 1's gradients at steps 2 and 3 (as an fp16 overflow would put there).
        trainer.backwardScaleHook = { step, micro in micro == 1 && (step == 2 || step == 3) ? .infinity : 1 }
        for _ in 0..<2 {
            let m = try trainer.trainStep()
            #expect(!m.skipped && m.lossScale == 1024)
        }
        let before = trainer.model.parameters.toArray()
        for expected: Float in [1024, 512] {
            // max_skipped_steps is 1: a divergence skip would throw here.
            let m = try trainer.trainStep()
            #expect(m.skipped && m.overflow && m.loss.isFinite && m.lossScale == expected)
            #expect(m.line(totalSteps: 8).contains("skipped (fp16 gradient overflow at loss scale \(expected), halved)"))
            #expect(trainer.model.parameters.toArray() == before)
            #expect(trainer.nonFiniteStreak == 0)
        }
        #expect(trainer.lossScaler?.scale == 256 && trainer.skippedSteps == 2)
        let next = try trainer.trainStep()
        #expect(!next.skipped && !next.overflow && next.lossScale == 256 && trainer.model.parameters.toArray() != before)
    }

    @Test func aNonFiniteLossIsStillADivergence() throws {
        let trainer = try Trainer(config: Self.config(maxSkipped: 1))
        _ = try trainer.trainStep()
        trainer.model.parameters.pointer.update(repeating: .nan, count: trainer.model.parameters.count)
        #expect(throws: TrainingError.self) { _ = try trainer.trainStep() }
        #expect(trainer.lossScaler?.scale == 65536, "a diverged forward must not move the scale")
    }

    /// The norm reported and clipped is the unscaled gradients': fp16 at 2¹⁶ reports fp32's norm (within fp16 rounding).
    @Test func gradientsAreUnscaledBeforeClipping() throws {
        let fp16 = try Trainer(config: Self.config()).trainStep()
        let fp32 = try Trainer(config: Self.config(precision: "fp32")).trainStep()
        #expect(abs(fp16.gradNorm - fp32.gradNorm) <= 1e-2 * fp32.gradNorm, "fp16 \(fp16.gradNorm) vs fp32 \(fp32.gradNorm)")
        #expect(fp16.gradNorm != fp32.gradNorm, "fp16 rounding not in use")
    }

    /// The scale doubles after loss_scale_growth_interval clean updates, and a resumed run goes on
    /// with the checkpoint's scale and growth count: the same losses and scales, bit for bit.
    @Test func theScaleGrowsAndAResumedRunContinuesExactly() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = try Self.config(extra: ", loss_scale: 256, loss_scale_growth_interval: 2")
        let whole = try Trainer(config: cfg)
        var losses: [Float] = [], scales: [Float?] = []
        for s in 0..<6 {
            let m = try whole.trainStep()
            losses.append(m.loss)
            scales.append(m.lossScale)
            if s == 2 { try whole.saveCheckpoint(in: dir) }
        }
        #expect(scales == [256, 256, 512, 512, 1024, 1024])
        let resumed = try Trainer(config: cfg)
        try resumed.resume(from: dir)
        #expect(resumed.step == 3 && resumed.lossScaler?.scale == 512 && resumed.lossScaler?.cleanSteps == 1)
        for s in 3..<6 {
            let m = try resumed.trainStep()
            #expect(m.loss.bitPattern == losses[s].bitPattern && m.lossScale == scales[s], "step \(s): \(m.loss) vs \(losses[s])")
        }
    }
}
