import Data
import Evaluation
import Foundation
import Testing
import Training
import ZeroTrainTestKit

/// The held-out split (`data.validation_fraction`, `data.validation_path`) and the evaluation
/// during training (`training.eval_interval`).
@Suite struct ValidationSplitTests {
    /// 1024 bytes: 896 of lower-case text, then 128 of "Z", which occurs nowhere before, so a
    /// fraction of 0.125 holds out exactly the Zs.
    static func markedText() -> String {
        let head = String(BuiltinCorpus.text(bytes: 2048).lowercased().filter { $0 != "z" }.prefix(896))
        return head + String(repeating: "Z", count: 128)
    }
    static let marker = Int32(UInt8(ascii: "Z"))

    static func config(data: String, steps: Int = 6, eval: Int = 0) throws -> TrainConfig {
        try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
            training: {lr: 0.01, warmup_steps: 2, total_steps: \(steps), micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1, eval_interval: \(eval), eval_sequences: 5}
            data: {seq_len: 16, \(data)}
            """)
    }

    @Test func theValidationTailIsNeverTrainedOn() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("marked.txt")
        try CLI.write(Self.markedText(), to: file)
        let trainer = try Trainer(config: Self.config(data: "source: text, path: \(file.path), validation_fraction: 0.125", eval: 2))
        let heldOut = try #require(trainer.heldOut)
        #expect(heldOut.tokens == Array(repeating: Self.marker, count: 128))
        #expect(heldOut.sequences == 5)
        guard case .stream(let train) = trainer.sampler.source else { Issue.record("not a stream"); return }
        #expect(train.count == 896 && !train.contains(Self.marker))
        // Several passes over the training windows: no input or target is a held-out token.
        let passes = 3 * trainer.sampler.windowsPerPass / (2 * 2)
        for step in 0..<passes {
            for micro in 0..<2 {
                let b = trainer.sampler.batch(step: step, micro: micro)
                #expect(!b.inputs.contains(Self.marker) && !b.targets.contains(Self.marker), "step \(step)")
            }
        }
    }

    @Test func evaluationIsReportedAndDoesNotChangeTraining() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let validation = dir.appendingPathComponent("validation.txt")
        try CLI.write(BuiltinCorpus.text(bytes: 4096).uppercased(), to: validation)
        func run(eval: Int, metrics: URL) throws -> [StepMetrics] {
            var cfg = try Self.config(data: "validation_path: \(validation.path)", steps: 5, eval: eval)
            cfg.training.metricsFile = metrics.path
            var lines: [String] = []
            _ = try TrainingRun(trainer: try Trainer(config: cfg), output: { lines.append($0) }).run()
            return try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n")
                .map { try JSONDecoder().decode(StepMetrics.self, from: Data($0.utf8)) }
        }
        let plain = try run(eval: 0, metrics: dir.appendingPathComponent("plain.jsonl"))
        let evaluated = try run(eval: 2, metrics: dir.appendingPathComponent("eval.jsonl"))
        // The same updates, bit for bit: evaluation reads the weights and changes nothing.
        #expect(plain.map(\.loss.bitPattern) == evaluated.map(\.loss.bitPattern))
        #expect(plain.map(\.gradNorm.bitPattern) == evaluated.map(\.gradNorm.bitPattern))
        #expect(plain.allSatisfy { $0.validation == nil })
        // After updates 2 and 4 (every 2) and 5 (the last): steps 1, 3, 4 (0-based).
        #expect(evaluated.filter { $0.validation != nil }.map(\.step) == [1, 3, 4])
        for m in evaluated {
            guard let v = m.validation else { continue }
            #expect(v.tokens == 5 * 16 && v.correct >= 0 && v.correct <= v.tokens)
            #expect(v.loss.isFinite && v.loss > 0 && abs(v.perplexity - exp(v.loss)) <= 1e-9 * v.perplexity)
        }
        // The last value is the final model's on those windows, recomputed here one window at a time.
        var cfg = try Self.config(data: "validation_path: \(validation.path)", steps: 5, eval: 2)
        cfg.training.metricsFile = dir.appendingPathComponent("again.jsonl").path
        let trainer = try Trainer(config: cfg)
        _ = try TrainingRun(trainer: trainer, output: { _ in }).run()
        let last = try #require(evaluated.last?.validation)
        var byHand = LanguageModelTotals()
        let tokens = try #require(trainer.heldOut?.tokens)
        for w in 0..<5 {
            let window = Array(tokens[(w * 16)..<(w * 16 + 17)])
            try trainer.model.forward(inputs: Array(window.dropLast()), targets: nil, batch: 1, seqLen: 16)
            byHand.add(logits: trainer.model.logits, targets: window.dropFirst(), vocab: 256)
        }
        #expect(byHand.tokens == last.tokens && byHand.correct == last.correct)
        #expect(abs(byHand.loss - last.loss) <= 1e-5 * last.loss, "\(byHand.loss) vs \(last.loss)")
    }

    /// With N ranks each evaluating its batches, the shares add up to one rank's evaluation.
    @Test(arguments: [2, 3])
    func ranksSharesAddUpToOneRank(worldSize: Int) throws {
        let trainer = try Trainer(config: Self.config(data: "validation_fraction: 0.1", eval: 1))
        let tokens = try #require(trainer.heldOut?.tokens)
        let evaluation = try HeldOutEvaluation(tokens: tokens, seqLen: 16, batchSize: 2, limit: 7)
        let one = try evaluation.run(model: trainer.model)
        #expect(one.tokens == 7 * 16)
        let shares = try (0..<worldSize).map { try evaluation.run(model: trainer.model, rank: $0, worldSize: worldSize) }
        let sum = shares.reduce(LanguageModelTotals(), +)
        #expect(sum.tokens == one.tokens && sum.correct == one.correct)
        #expect(abs(sum.negativeLogLikelihood - one.negativeLogLikelihood) <= 1e-9 * one.negativeLogLikelihood)
    }

    @Test func badValidationSettings() throws {
        #expect(throws: (any Error).self) { try Self.config(data: "validation_fraction: 1.5") }
        #expect(throws: (any Error).self) { try Self.config(data: "validation_fraction: 0.1, validation_path: x.txt") }
        #expect(throws: (any Error).self) { try Self.config(data: "source: builtin", eval: 5) }
        // A fraction that leaves less than a sequence for validation.
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("short.txt")
        try CLI.write(String(repeating: "abc ", count: 30), to: file)
        #expect(throws: DataError.self) { try Trainer(config: Self.config(data: "source: text, path: \(file.path), validation_fraction: 0.05")) }
    }
}
