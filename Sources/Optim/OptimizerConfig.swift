import Common

/// Optimizer, schedule and clipping settings. Its keys stand directly under `training:`
/// (`TrainingConfig` inlines `fields`).
public struct OptimizerConfig: ConfigSection, Equatable {
    /// "adamw" (the only optimizer for now).
    public var optimizer: String = "adamw"
    /// Peak learning rate.
    public var lr: Double = 3e-4
    /// Adam β1, β2.
    public var betas: [Double] = [0.9, 0.95]
    /// Adam ε, added after bias-correcting √v.
    public var eps: Double = 1e-8
    /// Decoupled weight decay, applied to tensors of 2+ dimensions only.
    public var weightDecay: Double = 0.1
    /// "cosine" (with linear warmup), "linear" (warmup then linear decay to 0) or "constant" (after warmup).
    public var schedule: String = "cosine"
    /// Steps of linear warmup from 0 to lr.
    public var warmupSteps: Int = 0
    /// Cosine waves over the decay phase (0.5 = half a cosine, lr → 0 at total_steps).
    public var numCycles: Double = 0.5
    /// Global L2 gradient-norm clip; 0 disables clipping.
    public var gradClip: Double = 1.0

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("optimizer", \.optimizer), .init("lr", \.lr), .init("betas", \.betas), .init("eps", \.eps),
        .init("weight_decay", \.weightDecay), .init("schedule", \.schedule), .init("warmup_steps", \.warmupSteps),
        .init("num_cycles", \.numCycles), .init("grad_clip", \.gradClip),
    ]

    public var beta1: Double { betas.count == 2 ? betas[0] : 0.9 }
    public var beta2: Double { betas.count == 2 ? betas[1] : 0.95 }
}
