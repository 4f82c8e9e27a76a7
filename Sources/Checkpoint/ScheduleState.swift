/// The learning-rate schedule at the checkpoint's step.
public struct ScheduleState: Codable, Sendable, Equatable {
    /// The schedule's name ("cosine", "linear", "constant", …).
    public var kind: String
    /// Peak learning rate (reached at the end of warm-up).
    public var peakLR: Double
    /// Optimizer steps of linear warm-up.
    public var warmupSteps: Int
    /// Optimizer steps the schedule spans.
    public var totalSteps: Int
    /// Cosine cycles over the decay (0.5 = half a cosine, from peak to zero).
    public var numCycles: Double
    /// The rate the next update (the checkpoint's `step`) uses.
    public var nextLR: Double

    enum CodingKeys: String, CodingKey {
        case kind, peakLR = "peak_lr", warmupSteps = "warmup_steps", totalSteps = "total_steps", numCycles = "num_cycles", nextLR = "next_lr"
    }

    public init(kind: String, peakLR: Double, warmupSteps: Int, totalSteps: Int, numCycles: Double, nextLR: Double) {
        self.kind = kind
        self.peakLR = peakLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.numCycles = numCycles
        self.nextLR = nextLR
    }
}
