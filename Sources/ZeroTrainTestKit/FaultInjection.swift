import Training

/// Faults the tests inject into real training: a rank whose parameters drift from the others
/// (the divergence guard must catch it).
public enum FaultInjection {
    /// Nudges the middle parameter of `trainer`'s shard by 1e-3.
    public static func perturbParameter(of trainer: Trainer) {
        let part = trainer.engine.parameterShard
        if !part.isEmpty { part[part.count / 2] += 1e-3 }
    }
}
