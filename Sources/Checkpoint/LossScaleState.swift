/// The dynamic loss scale of an fp16 run as a checkpoint records it (`manifest.json`'s
/// `loss_scale`; absent in other precisions): a resumed run goes on with the same scale and the
/// same count towards its next growth.
public struct LossScaleState: Codable, Sendable, Equatable {
    /// The factor the next update's loss is multiplied by.
    public var scale: Float
    /// Clean updates since the scale last changed.
    public var cleanSteps: Int

    enum CodingKeys: String, CodingKey { case scale, cleanSteps = "clean_steps" }

    public init(scale: Float, cleanSteps: Int) {
        self.scale = scale
        self.cleanSteps = cleanSteps
    }
}
