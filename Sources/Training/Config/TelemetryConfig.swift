import Common

/// The `telemetry:` section: optional measurements beyond the step's standard metrics.
public struct TelemetryConfig: ConfigSection, Equatable {
    /// Per-region gradient L2 norms before clipping (embedding, each block, head) every step:
    /// one pass over the rank's gradient shard and a vector in the step's scalar all-reduce.
    public var layerNorms = false

    public init() {}

    public static let fields: [ConfigField<Self>] = [.init("layer_norms", \.layerNorms)]
}
