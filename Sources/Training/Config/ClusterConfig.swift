import Common

/// The `cluster:` section: how a coordinator and its workers run a job together.
public struct ClusterConfig: ConfigSection, Equatable {
    /// Worker processes the coordinator waits for before it starts.
    public var workers = 1
    /// Control-plane heartbeat period in milliseconds (both directions).
    public var heartbeatIntervalMs = 500
    /// A peer silent for this long is declared lost (milliseconds).
    public var heartbeatTimeoutMs = 10_000
    /// Gradient all-reduce bucket size in MiB (buckets start while backward is still running).
    public var bucketMB = 4.0
    /// Compare parameter checksums across ranks every N steps (0 = never).
    public var divergenceCheckInterval = 10
    /// Deadline of one collective in seconds.
    public var collectiveTimeoutSeconds = 60.0
    /// How long a worker keeps trying to reach the coordinator, in seconds.
    public var connectTimeoutSeconds = 60.0

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("workers", \.workers), .init("heartbeat_interval_ms", \.heartbeatIntervalMs),
        .init("heartbeat_timeout_ms", \.heartbeatTimeoutMs), .init("bucket_mb", \.bucketMB),
        .init("divergence_check_interval", \.divergenceCheckInterval),
        .init("collective_timeout_s", \.collectiveTimeoutSeconds), .init("connect_timeout_s", \.connectTimeoutSeconds),
    ]

    public func validate(path p: String = "cluster") throws {
        func fail(_ f: String, _ rule: String) -> ConfigError { ConfigError("\(p).\(f): \(rule)") }
        guard workers >= 1 else { throw fail("workers", "must be ≥ 1, got \(workers)") }
        guard heartbeatIntervalMs >= 10 else { throw fail("heartbeat_interval_ms", "must be ≥ 10, got \(heartbeatIntervalMs)") }
        guard heartbeatTimeoutMs > heartbeatIntervalMs else {
            throw fail("heartbeat_timeout_ms", "must be > heartbeat_interval_ms (\(heartbeatIntervalMs)), got \(heartbeatTimeoutMs)")
        }
        guard bucketMB > 0 else { throw fail("bucket_mb", "must be > 0, got \(bucketMB)") }
        guard divergenceCheckInterval >= 0 else { throw fail("divergence_check_interval", "must be ≥ 0, got \(divergenceCheckInterval)") }
        guard collectiveTimeoutSeconds > 0 else { throw fail("collective_timeout_s", "must be > 0, got \(collectiveTimeoutSeconds)") }
        guard connectTimeoutSeconds > 0 else { throw fail("connect_timeout_s", "must be > 0, got \(connectTimeoutSeconds)") }
    }
}
