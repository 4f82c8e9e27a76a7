import Training

import Foundation

/// Faults the tests inject into real training: a rank whose parameters drift from the others
/// (the divergence guard must catch it), a rank that stalls in the middle of a step (its peers'
/// collectives time out and write their flight recorders), a rank whose gradients overflow (fp16's
/// loss scaler must skip the step on every rank).
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

    /// From now on `trainer`'s first micro-batch of step `step` (0-based) back-propagates an
    /// infinite loss scale: its gradients are inf and NaN on this rank only, as an fp16 overflow.
    public static func overflow(_ trainer: Trainer, atStep step: Int) {
        let previous = trainer.backwardScaleHook
        trainer.backwardScaleHook = { s, micro in
            (s == step && micro == 0 ? Float.infinity : 1) * (previous?(s, micro) ?? 1)
        }
    }
}
