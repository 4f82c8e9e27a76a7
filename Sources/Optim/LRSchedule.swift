import Foundation

/// Learning-rate schedules as multipliers λ(step) of the peak rate, exactly as transformers'
/// `get_cosine_schedule_with_warmup`, `get_linear_schedule_with_warmup` and
/// `get_constant_schedule_with_warmup`: update k (0-based) uses λ(k), so the first warmup
/// update runs at lr 0.
public struct LRSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case cosine, linear, constant }
    public let kind: Kind
    public let warmupSteps: Int
    public let totalSteps: Int
    public let numCycles: Double

    public init(kind: Kind, warmupSteps: Int, totalSteps: Int, numCycles: Double = 0.5) {
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.numCycles = numCycles
    }

    /// λ(step).
    public func multiplier(step: Int) -> Double {
        if step < warmupSteps { return Double(step) / Double(max(1, warmupSteps)) }
        switch kind {
        case .constant:
            return 1
        case .linear:
            return max(0, Double(totalSteps - step) / Double(max(1, totalSteps - warmupSteps)))
        case .cosine:
            let progress = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
            return max(0, 0.5 * (1 + cos(Double.pi * numCycles * 2 * progress)))
        }
    }

    /// The learning rate of update `step` for a peak rate `lr`.
    public func rate(step: Int, peak lr: Double) -> Double { lr * multiplier(step: step) }
}
