/// Dynamic loss scaling for fp16 mixed precision, as PyTorch's `GradScaler`: the loss is
/// multiplied by `scale` before backward so that small gradients survive fp16's range, and the
/// gradients are divided by it before clipping and the update. An update whose gradients
/// overflowed (inf or NaN anywhere, on any rank) is skipped and halves the scale; after
/// `growthInterval` clean updates in a row the scale doubles. Factors of 2 keep the scale a power
/// of two, so scaling and unscaling are exact.
public struct DynamicLossScaler: Sendable, Equatable {
    /// The factor the loss is multiplied by.
    public private(set) var scale: Float
    /// Clean updates since the scale last changed.
    public private(set) var cleanSteps: Int
    public let growthInterval: Int

    public init(scale: Float, growthInterval: Int, cleanSteps: Int = 0) {
        precondition(scale > 0 && scale.isFinite && growthInterval >= 1, "a loss scale is positive and finite, its growth interval ≥ 1")
        self.scale = scale
        self.growthInterval = growthInterval
        self.cleanSteps = cleanSteps
    }

    /// What to do with an update after the gradients of all ranks are reduced.
    public enum Decision: Equatable, Sendable {
        /// Apply the update to gradients × `unscale` (1 / the scale backward used).
        case apply(unscale: Float)
        /// Overflow: skip the update; the scale was halved.
        case skip
    }

    /// The update of a step whose reduced gradients were `finite` or not; moves the scale.
    public mutating func update(gradientsFinite finite: Bool) -> Decision {
        guard finite else {
            scale *= 0.5
            cleanSteps = 0
            return .skip
        }
        let unscale = 1 / scale
        cleanSteps += 1
        if cleanSteps == growthInterval {
            scale *= 2
            cleanSteps = 0
        }
        return .apply(unscale: unscale)
    }
}
