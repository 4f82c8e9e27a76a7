import Common

/// The `fault_tolerance:` section: what the coordinator does when a worker or itself fails.
public struct FaultToleranceConfig: ConfigSection, Equatable {
    /// "restart": wait for the worker to come back or a replacement, then continue; "elastic":
    /// without a replacement, continue on the survivors; "stop": end the job (exit 1).
    public var policy = "restart"
    /// How long the coordinator waits for a lost worker to come back or a replacement to register, in seconds.
    public var rejoinTimeoutSeconds = 30.0
    /// elastic: the fewest workers the job shrinks to.
    public var minWorkers = 1
    /// Recoveries allowed within `restart_window_s` before the job gives up.
    public var maxRestarts = 10
    /// The window of `max_restarts`, in seconds.
    public var restartWindowSeconds = 600.0
    /// Every N steps each rank copies its shard to its ring successor's host memory (0 = off).
    public var replicaInterval = 0
    /// Consecutive updates skipped for non-finite loss or gradients before `on_non_finite_streak`.
    public var maxSkippedSteps = 3
    /// "rollback": reload the last checkpoint and continue; "stop": end the job.
    public var onNonFiniteStreak = "rollback"

    public init() {}

    public static let policies = ["restart", "elastic", "stop"]

    public static let fields: [ConfigField<Self>] = [
        .init("policy", \.policy), .init("rejoin_timeout_s", \.rejoinTimeoutSeconds), .init("min_workers", \.minWorkers),
        .init("max_restarts", \.maxRestarts), .init("restart_window_s", \.restartWindowSeconds),
        .init("replica_interval", \.replicaInterval), .init("max_skipped_steps", \.maxSkippedSteps),
        .init("on_non_finite_streak", \.onNonFiniteStreak),
    ]

    /// Whether failures are recovered from (restart or elastic) rather than ending the job.
    public var recovers: Bool { policy != "stop" }

    public func validate(path p: String = "fault_tolerance") throws {
        func fail(_ f: String, _ rule: String) -> ConfigError { ConfigError("\(p).\(f): \(rule)") }
        guard Self.policies.contains(policy) else { throw fail("policy", "must be restart, elastic or stop, got \"\(policy)\"") }
        guard rejoinTimeoutSeconds > 0 else { throw fail("rejoin_timeout_s", "must be > 0, got \(rejoinTimeoutSeconds)") }
        guard minWorkers >= 1 else { throw fail("min_workers", "must be ≥ 1, got \(minWorkers)") }
        guard maxRestarts >= 0 else { throw fail("max_restarts", "must be ≥ 0, got \(maxRestarts)") }
        guard restartWindowSeconds > 0 else { throw fail("restart_window_s", "must be > 0, got \(restartWindowSeconds)") }
        guard replicaInterval >= 0 else { throw fail("replica_interval", "must be ≥ 0, got \(replicaInterval)") }
        guard maxSkippedSteps >= 1 else { throw fail("max_skipped_steps", "must be ≥ 1, got \(maxSkippedSteps)") }
        guard ["rollback", "stop"].contains(onNonFiniteStreak) else {
            throw fail("on_non_finite_streak", "must be rollback or stop, got \"\(onNonFiniteStreak)\"")
        }
    }
}
