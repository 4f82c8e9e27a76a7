import Training

import Foundation

/// Faults the tests inject into real training: a rank whose parameters drift from the others
/// (the divergence guard must catch it), a rank that stalls in the middle of a step (its peers'
/// collectives time out and write their flight recorders).
public enum FaultInjection {
    /// Nudges the middle parameter of `trainer`'s shard by 1e-3.
    public static func perturbParameter(of trainer: Trainer) {
        let part = trainer.engine.parameterShard
        if !part.isEmpty { part[part.count / 2] += 1e-3 }
    }

    /// From now on `trainer` sleeps for `seconds` before the first backward of step `step`
    /// (0-based): inside the step, so its peers are waiting in a collective for it.
    public static func stall(_ trainer: Trainer, atStep step: Int, seconds: Double) {
        let previous = trainer.backwardScaleHook
        trainer.backwardScaleHook = { s, micro in
            if s == step && micro == 0 { Thread.sleep(forTimeInterval: seconds) }
            return previous?(s, micro) ?? 1
        }
    }
}
