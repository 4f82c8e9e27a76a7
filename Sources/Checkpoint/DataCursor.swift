/// Where the data order stands: sequences of the job's sample order consumed before the checkpoint's step.
public struct DataCursor: Codable, Sendable, Equatable {
    /// Sequences consumed (step × global batch when no step was cut short).
    public var samplesConsumed: Int
    /// Sequences per step over all ranks (micro-batch size × accumulation × data-parallel ranks).
    public var globalBatch: Int
    /// The seed the sample order derives from.
    public var seed: UInt64

    enum CodingKeys: String, CodingKey { case samplesConsumed = "samples_consumed", globalBatch = "global_batch", seed }

    public init(samplesConsumed: Int, globalBatch: Int, seed: UInt64) {
        self.samplesConsumed = samplesConsumed
        self.globalBatch = globalBatch
        self.seed = seed
    }
}
