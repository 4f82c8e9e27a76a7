import Checkpoint
import Foundation
import Telemetry

/// Drives a `Trainer` to the end of its schedule: logging, metrics file, periodic checkpoints
/// and a checkpoint when asked to stop early.
public struct TrainingRun {
    public let trainer: Trainer
    public var output: (String) -> Void
    /// Polled between updates; when it returns true the run checkpoints and returns.
    public var shouldStop: () -> Bool = { false }

    public init(trainer: Trainer, output: @escaping (String) -> Void) {
        self.trainer = trainer
        self.output = output
    }

    public enum Outcome: Equatable { case finished, stopped(step: Int) }

    public func run() throws -> Outcome {
        let t = trainer.config.training
        let checkpointDir = t.checkpointDir.map { URL(fileURLWithPath: $0) }
        let metricsPath = t.metricsFile ?? t.checkpointDir.map { $0 + "/metrics.jsonl" }
        let metrics = try metricsPath.map { try MetricsLog(path: $0) }
        if trainer.isFinished {
            output("the job has already finished: step \(trainer.step) of \(t.totalSteps) (raise training.total_steps to train on)")
            return .finished
        }
        output("training \(trainer.model.table.count) parameters (\(trainer.config.model.numLayers) layers, hidden \(trainer.config.model.hiddenSize)"
               + (trainer.config.model.isMoE ? ", \(trainer.config.model.moeConfig!.numExperts) experts top-\(trainer.config.model.moeConfig!.topK)" : "")
               + ") for \(t.totalSteps) steps from step \(trainer.step), \(t.threads) thread(s)")
        // Checkpoint steps rolled back to already.
        var rolledBackTo: Set<Int> = []
        while !trainer.isFinished {
            if shouldStop() {
                if let checkpointDir {
                    let saved = try trainer.saveCheckpoint(in: checkpointDir)
                    output("stopped at step \(trainer.step); checkpoint \(saved.path)")
                } else {
                    output("stopped at step \(trainer.step) (no training.checkpoint_dir, nothing saved)")
                }
                return .stopped(step: trainer.step)
            }
            var m: StepMetrics
            do {
                m = try trainer.trainStep()
            } catch let e as TrainingError where e.code == .nonFiniteStreak {
                try rollBack(after: e, checkpointDir: checkpointDir, rolledBackTo: &rolledBackTo)
                continue
            }
            if trainer.evaluationDue { m.validation = try trainer.evaluate() }
            if m.step % t.logInterval == 0 || trainer.isFinished || m.skipped || m.validation != nil {
                output(m.line(totalSteps: t.totalSteps))
                try metrics?.append(m)
            }
            if let checkpointDir, t.checkpointInterval > 0, trainer.step % t.checkpointInterval == 0 || trainer.isFinished {
                try trainer.saveCheckpoint(in: checkpointDir)
            } else if let checkpointDir, trainer.isFinished {
                try trainer.saveCheckpoint(in: checkpointDir)
            }
        }
        if let checkpointDir { output("done; final checkpoint in \(checkpointDir.path)") }
        return .finished
    }

    /// `fault_tolerance.on_non_finite_streak`: rethrows `streak` for `stop`; for `rollback`
    /// reloads the latest checkpoint of `checkpointDir` — once per checkpoint step, so a streak
    /// that comes back after rolling back to the same checkpoint stops the run.
    private func rollBack(after streak: TrainingError, checkpointDir: URL?, rolledBackTo: inout Set<Int>) throws {
        guard trainer.config.faultTolerance.onNonFiniteStreak == .rollback else { throw streak }
        guard let checkpointDir else {
            throw TrainingError(.nonFiniteStreak, "\(streak.message); no checkpoint to roll back to (training.checkpoint_dir is not set)", cause: streak)
        }
        let reader: CheckpointReader<TrainConfig>
        do {
            reader = try CheckpointReader(checkpointDir)
        } catch {
            throw TrainingError(.nonFiniteStreak, "\(streak.message); no checkpoint to roll back to in \(checkpointDir.path)", cause: streak)
        }
        let step = reader.manifest.step
        guard rolledBackTo.insert(step).inserted else {
            throw TrainingError(.nonFiniteStreak, "\(streak.message); already rolled back to the checkpoint of step \(step) once, stopping", cause: streak)
        }
        let skippedBefore = trainer.skippedSteps
        try trainer.resume(from: reader)
        trainer.nonFiniteStreak = 0
        output("\(streak.message); rolled back to the checkpoint of step \(step) (\(reader.folder.path)), \(skippedBefore) update(s) skipped so far")
    }
}
