import Common
import Foundation
import Model
import Optim
import Testing
import Training
import ZeroTrainTestKit

/// An update whose loss or gradient norm is not finite is skipped on every rank, and a streak of
/// them stops or rolls the run back (`fault_tolerance`).
@Suite struct NonFiniteStepTests {
    static func config(dir: String? = nil, stage: Int = 0, totalSteps: Int = 6, extra: String = "") throws -> TrainConfig {
        var c = try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
            training: {lr: 0.01, warmup_steps: 2, total_steps: \(totalSteps), micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1, checkpoint_interval: 2}
            data: {seq_len: 16}
            zero: {stage: \(stage), param_persistence_threshold: 0}
            fault_tolerance: {max_skipped_steps: 2\(extra)}
            """)
        c.training.checkpointDir = dir
        return c
    }

    /// Poisons the gradients of micro-batch 1 at the steps for which `when` holds.
    static func poison(_ trainer: Trainer, when: @escaping (Int) -> Bool) {
        trainer.backwardScaleHook = { step, micro in micro == 1 && when(step) ? .nan : 1 }
    }

    @Test func aPoisonedStepChangesNothingAndAdamCountsAppliedUpdates() throws {
        let cfg = try Self.config()
        let trainer = try Trainer(config: cfg)
        Self.poison(trainer) { $0 == 2 }
        for _ in 0..<2 {
            let m = try trainer.trainStep()
            #expect(!m.skipped)
        }
        let before = trainer.model.parameters.toArray()
        let m = try trainer.trainStep()
        #expect(m.skipped && m.loss.isFinite && !m.gradNorm.isFinite)
        #expect(trainer.model.parameters.toArray() == before)
        #expect(trainer.skippedSteps == 1 && trainer.nonFiniteStreak == 1 && trainer.step == 3)

        // The next update is AdamW's third (t = step + 1 − skipped = 3), from the unchanged state.
        let optimizer = trainer.engine.optimizer
        let m0 = Array(optimizer.expAvg.buffer), v0 = Array(optimizer.expAvgSq.buffer)
        let next = try trainer.trainStep()
        #expect(!next.skipped && trainer.nonFiniteStreak == 0 && trainer.skippedSteps == 1)
        // AdamW multiplies the gradients by the clip factor as it reads them (the buffer keeps the raw ones).
        let gradients = Array(trainer.engine.gradientShard)
        let factor = GradientClipping.factor(norm: next.gradNorm, maxNorm: cfg.training.optim.gradClip)
        let lr = cfg.training.schedule.rate(step: 3, peak: cfg.training.optim.lr)
        func adamW(t: Int) -> [Float] {
            var p = before, m = m0, v = v0
            let adam = AdamW(cfg.training.optim)
            for e in trainer.model.table.entries {
                p.withUnsafeMutableBufferPointer { p in
                    m.withUnsafeMutableBufferPointer { m in
                        v.withUnsafeMutableBufferPointer { v in
                            gradients.withUnsafeBufferPointer { g in
                                adam.update(parameters: p.baseAddress! + e.offset, gradients: g.baseAddress! + e.offset,
                                            m: m.baseAddress! + e.offset, v: v.baseAddress! + e.offset, count: e.count,
                                            lr: lr, t: t, decays: e.decays, gradientScale: factor)
                            }
                        }
                    }
                }
            }
            return p
        }
        func distance(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }
        let after = trainer.model.parameters.toArray()
        let applied = distance(after, adamW(t: 3)), counted = distance(after, adamW(t: 4))
        #expect(applied <= 1e-6, "against t = 3: \(applied)")
        #expect(counted > 100 * max(applied, 1e-9), "t = 4 must differ: \(counted)")
    }

    @Test func skippedMetricsAreMarkedInTheLineAndTheRecord() throws {
        var m = StepMetrics(step: 4, loss: .nan, auxLoss: 0, lr: 1e-3, gradNorm: .infinity, tokens: 64, seconds: 0.5)
        let plain = String(decoding: try JSONEncoder().encode(StepMetrics(step: 4, loss: 2, auxLoss: 0, lr: 1e-3, gradNorm: 1,
                                                                          tokens: 64, seconds: 0.5)), as: UTF8.self)
        #expect(!plain.contains("skipped"))
        m.skipped = true
        let json = try JSONEncoder().encode(m)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains(#""skipped":true"#) && text.contains(#""loss":"NaN""#) && text.contains(#""grad_norm":"Infinity""#))
        let back = try JSONDecoder().decode(StepMetrics.self, from: json)
        #expect(back.skipped && back.loss.isNaN && back.gradNorm == .infinity)
        #expect(m.line(totalSteps: 10).hasSuffix("skipped (non-finite loss/gradients)"))
        #expect(m.line(totalSteps: 10).hasPrefix("step 5/10"))
    }

    /// Rank 1 alone is poisoned; the all-reduced totals make both ranks skip, and they stay equal.
    @Test(arguments: [0, 1, 2, 3])
    func everyRankSkipsWhenOneIsPoisoned(stage: Int) throws {
        let shards = Monitor<[Int: [[Float]]]>([:])
        let skipped = Monitor<[Int: [Bool]]>([:])
        let run = try InProcessCluster.train(try Self.config(stage: stage), ranks: 2, steps: 4, prepare: { trainer in
            shards.withLock { $0[trainer.rank] = [Array(trainer.engine.parameterShard)] }
            if trainer.rank == 1 { Self.poison(trainer) { $0 == 1 } }
        }, afterStep: { trainer, m in
            skipped.withLock { $0[trainer.rank, default: []].append(m.skipped) }
            shards.withLock { $0[trainer.rank]!.append(Array(trainer.engine.parameterShard)) }
        })
        #expect(run.skipped == [false, true, false, false])
        #expect(skipped.withLock { $0 } == [0: [false, true, false, false], 1: [false, true, false, false]])
        #expect(run.parametersPerRank.count == 2 && run.parametersPerRank[0] == run.parametersPerRank[1])
        #expect(run.parameters.allSatisfy { $0.isFinite })
        for (rank, history) in shards.withLock({ $0 }) {
            #expect(history.count == 5)
            // Step 1 (history[2]) was skipped; step 2 (after warmup) changes the shard.
            #expect(history[2] == history[1], "stage \(stage) rank \(rank): the skipped step changed the shard")
            #expect(history[3] != history[2])
        }
    }

    @Test func aStreakOfMaxSkippedStepsThrows() throws {
        let trainer = try Trainer(config: try Self.config())
        Self.poison(trainer) { $0 >= 1 }
        _ = try trainer.trainStep()
        let second = try trainer.trainStep()
        #expect(second.skipped)
        #expect { try trainer.trainStep() } throws: { error in
            guard let e = error as? TrainingError else { return false }
            return e.code == .nonFiniteStreak && e.kind == .runtime
                && e.message.hasPrefix("step 3: 2 consecutive updates skipped") && e.message.contains("max_skipped_steps is 2")
        }
        #expect(trainer.skippedSteps == 2 && trainer.step == 3)
    }

    @Test func theRunStopsOnAStreakWhenAskedTo() throws {
        let trainer = try Trainer(config: try Self.config(extra: ", on_non_finite_streak: stop"))
        Self.poison(trainer) { $0 >= 1 }
        #expect { try TrainingRun(trainer: trainer, output: { _ in }).run() } throws: {
            ($0 as? TrainingError)?.code == .nonFiniteStreak
        }
    }

    @Test func rollbackWithoutACheckpointIsAnError() throws {
        let trainer = try Trainer(config: try Self.config())
        Self.poison(trainer) { $0 >= 1 }
        #expect { try TrainingRun(trainer: trainer, output: { _ in }).run() } throws: {
            ($0 as? TrainingError)?.message.contains("no checkpoint to roll back to") == true
        }
    }

    /// Steps 3 and 4 are poisoned once: the run rolls back to the checkpoint of step 2, replays
    /// them cleanly and ends where an unpoisoned run ends, bit for bit.
    @Test func rollbackReloadsTheLatestCheckpointAndContinues() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("zt-nonfinite-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let reference = try Trainer(config: try Self.config(dir: root.appendingPathComponent("a").path))
        _ = try TrainingRun(trainer: reference, output: { _ in }).run()

        let trainer = try Trainer(config: try Self.config(dir: root.appendingPathComponent("b").path))
        var poisoned = 0
        trainer.backwardScaleHook = { step, micro in
            guard micro == 1, step >= 2, poisoned < 2 else { return 1 }
            poisoned += 1
            return .nan
        }
        var lines: [String] = []
        #expect(try TrainingRun(trainer: trainer, output: { lines.append($0) }).run() == .finished)
        let rollbacks = lines.filter { $0.contains("rolled back") }
        #expect(rollbacks.count == 1)
        #expect(rollbacks.first?.contains("rolled back to the checkpoint of step 2") == true, "\(lines)")
        #expect(lines.filter { $0.contains("skipped (non-finite loss/gradients)") }.count == 1)
        #expect(trainer.step == 6 && trainer.skippedSteps == 0)
        #expect(trainer.model.parameters.toArray() == reference.model.parameters.toArray())
    }

    @Test func aSecondStreakAfterRollingBackToTheSameCheckpointStops() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("zt-nonfinite-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let trainer = try Trainer(config: try Self.config(dir: root.path))
        Self.poison(trainer) { $0 >= 2 }
        var lines: [String] = []
        #expect { try TrainingRun(trainer: trainer, output: { lines.append($0) }).run() } throws: {
            ($0 as? TrainingError)?.message.contains("already rolled back to the checkpoint of step 2 once") == true
        }
        #expect(lines.filter { $0.contains("rolled back") }.count == 1)
    }
}
