import Common

/// The `fault_tolerance:` section: what the job does when a worker dies or training diverges.
public struct FaultToleranceConfig: ConfigSection, Equatable {
    /// What the coordinator does when a worker is lost.
    public enum Policy: String, Sendable, CaseIterable {
        /// Wait `rejoin_timeout_s` for the worker (or a replacement) and resume the same world size
        /// from the last checkpoint.
        case restart
        /// Go on with the surviving workers (down to `min_workers`), resharded.
        case elastic
        /// Fail the job.
        case stop
    }

    /// What a rank does after `max_skipped_steps` consecutive non-finite updates.
    public enum StreakAction: String, Sendable, CaseIterable {
        /// Reload the last checkpoint and continue (at most once per checkpoint).
        case rollback
        /// Fail the run.
        case stop
    }

    /// How a replica reaches the ring successor.
    public enum ReplicaTransport: String, Sendable, CaseIterable {
        /// Through shared memory (/dev/shm) when the successor is on the same host, else over the ring.
        case auto
        /// Always over the ring, with a CRC.
        case network
    }

    /// What the coordinator does when a worker is lost: restart, elastic or stop.
    public var policy = Policy.restart
    /// How long the coordinator waits for a dead worker to come back or a replacement to register, in seconds.
    public var rejoinTimeoutSeconds = 30.0
    /// Elastic: the fewest workers the job shrinks to; below that it fails.
    public var minWorkers = 1
    /// Recoveries allowed within `restart_window_s`; one more and the job gives up.
    public var maxRestarts = 10
    /// The window over which `max_restarts` is counted, in seconds.
    public var restartWindowSeconds = 600.0
    /// Every N steps each rank copies its shard to its ring successor's host memory (0 = off).
    public var replicaInterval = 0
    /// auto: a same-host successor maps the rank's snapshot in shared memory; network: it always travels.
    public var replicaTransport = ReplicaTransport.auto
    /// Consecutive updates skipped for a non-finite loss or gradient norm before `on_non_finite_streak`.
    public var maxSkippedSteps = 3
    /// After `max_skipped_steps` consecutive skipped updates: rollback or stop.
    public var onNonFiniteStreak = StreakAction.rollback

    public init() {}

    /// Whether failures are recovered from (restart or elastic) rather than ending the job.
    public var recovers: Bool { policy != .stop }

    public static let fields: [ConfigField<Self>] = [
        .init("policy", \.policy, read: choice(Policy.self), write: { $0.rawValue }),
        .init("rejoin_timeout_s", \.rejoinTimeoutSeconds), .init("min_workers", \.minWorkers),
        .init("max_restarts", \.maxRestarts), .init("restart_window_s", \.restartWindowSeconds),
        .init("replica_interval", \.replicaInterval),
        .init("replica_transport", \.replicaTransport, read: choice(ReplicaTransport.self), write: { $0.rawValue }),
        .init("max_skipped_steps", \.maxSkippedSteps),
        .init("on_non_finite_streak", \.onNonFiniteStreak, read: choice(StreakAction.self), write: { $0.rawValue }),
    ]

    /// One of an enumeration's raw values (`must be restart, elastic or stop, got pause`).
    private static func choice<E: RawRepresentable & CaseIterable & Sendable>(_: E.Type)
        -> @Sendable (any SingleValueDecodingContainer) throws -> E where E.RawValue == String {
        { value in
            let text = try value.decode(String.self)
            guard let e = E(rawValue: text) else {
                let names = E.allCases.map(\.rawValue)
                let list = names.count > 1 ? names.dropLast().joined(separator: ", ") + " or " + names.last! : names.joined()
                throw InvalidConfigValue("must be \(list), got \(text)")
            }
            return e
        }
    }

    public func validate(path p: String = "fault_tolerance") throws {
        func fail(_ f: String, _ rule: String) -> ConfigError { ConfigError("\(p).\(f): \(rule)") }
        guard rejoinTimeoutSeconds > 0, rejoinTimeoutSeconds.isFinite else {
            throw fail("rejoin_timeout_s", "must be > 0, got \(rejoinTimeoutSeconds)")
        }
        guard minWorkers >= 1 else { throw fail("min_workers", "must be ≥ 1, got \(minWorkers)") }
        guard maxRestarts >= 0 else { throw fail("max_restarts", "must be ≥ 0, got \(maxRestarts)") }
        guard restartWindowSeconds > 0, restartWindowSeconds.isFinite else {
            throw fail("restart_window_s", "must be > 0, got \(restartWindowSeconds)")
        }
        guard replicaInterval >= 0 else { throw fail("replica_interval", "must be ≥ 0 (0 = off), got \(replicaInterval)") }
        guard maxSkippedSteps >= 1 else { throw fail("max_skipped_steps", "must be ≥ 1, got \(maxSkippedSteps)") }
    }
}
