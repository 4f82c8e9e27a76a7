import Foundation
import Testing
import Training
import ZeroTrainTestKit

/// fp8's delayed scaling in the trainer: one amax history entry per optimizer step (the largest
/// amax over the step's micro-batches), scales made only of earlier steps, and the histories part
/// of the checkpointed and replicated state.
@Suite struct FP8ScalingTests {
    static func config(accumulation: Int = 2, history: Int = 4, steps: Int = 6) throws -> TrainConfig {
        try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
            training: {lr: 0.01, warmup_steps: 2, total_steps: \(steps), micro_batch_size: 2, gradient_accumulation_steps: \(accumulation), threads: 1, precision: fp8, fp8_amax_history: \(history)}
            data: {seq_len: 16}
            """)
    }

    /// After k steps every history holds k entries (the rest still 0), one per step; the first step
    /// casts everything at scale 1, so its losses do not depend on anything recorded before.
    @Test func theHistoriesHoldOneEntryPerStep() throws {
        let trainer = try Trainer(config: Self.config(history: 4))
        for k in 1...3 {
            _ = try trainer.trainStep()
            let histories = trainer.model.fp8Histories
            #expect(!histories.isEmpty)
            for (name, h) in histories {
                #expect(h.count == 12, "\(name)")
                // The embedding (untied) is a lookup, never a product's operand: only its weight is cast.
                let casts = name == "model.embed_tokens.weight" && !trainer.model.config.tieEmbeddings ? 1 : 3
                for part in 0..<casts {
                    let history = Array(h[(4 * part)..<(4 * part + 4)])
                    #expect(history.prefix(4 - k).allSatisfy { $0 == 0 }, "\(name) part \(part) after \(k) steps: \(history)")
                    #expect(history.suffix(k).allSatisfy { $0 > 0 }, "\(name) part \(part) after \(k) steps: \(history)")
                }
            }
            // An evaluation-like pass between steps does not enter the next step's entry.
            #expect(trainer.model.fp8StepAmaxes.allSatisfy { $0 == 0 })
        }
    }

    /// A run checkpointed after step 3 and resumed (from the checkpoint, and from an in-memory
    /// snapshot) goes on with the same scales: the same losses, bit for bit.
    @Test func aResumedRunContinuesExactly() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = try Self.config()
        let whole = try Trainer(config: cfg)
        var losses: [Float] = []
        var snapshot: ShardSnapshot?
        for s in 0..<6 {
            losses.append(try whole.trainStep().loss)
            if s == 2 {
                try whole.saveCheckpoint(in: dir)
                snapshot = whole.snapshot()
            }
        }
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: dir.appendingPathComponent("step-00000003/manifest.json"))) as? [String: Any]
        let recorded = manifest?["fp8_scaling"] as? [String: Any]
        #expect((recorded?["history_length"] as? NSNumber)?.intValue == 4)
        #expect(((recorded?["student"] as? [String: Any])?.count ?? 0) == whole.model.fp8Histories.count)

        let resumed = try Trainer(config: cfg)
        try resumed.resume(from: dir)
        let fromMemory = try Trainer(config: cfg)
        try fromMemory.restore(step: 3, transfers: []) { $0 == 0 ? snapshot : nil }
        for trainer in [resumed, fromMemory] {
            #expect(trainer.step == 3)
            for s in 3..<6 {
                let loss = try trainer.trainStep().loss
                #expect(loss.bitPattern == losses[s].bitPattern, "step \(s): \(loss) vs \(losses[s])")
            }
            #expect(trainer.model.fp8Histories == whole.model.fp8Histories)
        }
        // Without the histories (restarted at scale 1) the losses differ: the test can fail.
        let restarted = try Trainer(config: cfg)
        try restarted.resume(from: dir)
        try restarted.model.restoreFP8Histories(restarted.model.fp8Histories.mapValues { $0.map { _ in 0 } })
        #expect(try restarted.trainStep().loss.bitPattern != losses[3].bitPattern)
    }
}
