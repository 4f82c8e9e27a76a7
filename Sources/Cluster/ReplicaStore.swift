import Common
import Foundation
import Training

/// What a worker holds of the job's state in its host memory, as it tells the coordinator when it
/// registers: shard `rank` (of `worldSize`) after update `step`.
public struct ReplicaInfo: Codable, Sendable, Equatable, Hashable {
    public var rank: Int
    public var worldSize: Int
    public var step: Int
    /// Whether it is the worker's own rank's shard (false: a copy of its ring predecessor's).
    public var own: Bool

    public init(rank: Int, worldSize: Int, step: Int, own: Bool) {
        self.rank = rank
        self.worldSize = worldSize
        self.step = step
        self.own = own
    }
}

/// How a new membership restores the state from the workers' memory instead of a checkpoint:
/// the step, and for each rank where its shard comes from (nil: its own worker holds it; else
/// the rank whose worker holds it broadcasts it on the new ring).
public struct ReplicaRestore: Codable, Sendable, Equatable {
    public var step: Int
    public var sources: [Int?]

    public init(step: Int, sources: [Int?]) {
        self.step = step
        self.sources = sources
    }

    /// The ranks whose shard travels, in rank order, with the rank that sends it.
    public var transfers: [(rank: Int, root: Int)] {
        sources.enumerated().compactMap { r, source in source.map { (r, $0) } }
    }
}

/// A worker's in-memory copies of shards (fault_tolerance.replica_interval): every replica
/// interval each of its devices puts its own snapshot here and, once the ring exchange has
/// delivered it, its predecessor's. It belongs to the worker, not to a device, so it outlives the
/// devices of a membership that failed. The newest `generations` steps are kept, so that a
/// failure during an exchange still leaves a complete older generation.
public final class ReplicaStore: Sendable {
    public static let generations = 2
    private let entries = Monitor<[ReplicaInfo: ShardSnapshot]>([:])

    public init() {}

    public func put(_ snapshot: ShardSnapshot, own: Bool) {
        let key = ReplicaInfo(rank: snapshot.rank, worldSize: snapshot.worldSize, step: snapshot.step, own: own)
        entries.withLock { e in
            e[key] = snapshot
            let steps = Set(e.keys.map(\.step)).sorted(by: >)
            if steps.count > Self.generations {
                let keep = Set(steps.prefix(Self.generations))
                e = e.filter { keep.contains($0.key.step) }
            }
        }
    }

    /// What the store holds, for the registration.
    public var catalogue: [ReplicaInfo] { entries.withLock { Array($0.keys) }.sorted { ($0.step, $0.rank) < ($1.step, $1.rank) } }

    /// The snapshot of shard `rank` of `worldSize` after `step`, own or replica.
    public func snapshot(rank: Int, worldSize: Int, step: Int) -> ShardSnapshot? {
        entries.withLock { e in
            e[ReplicaInfo(rank: rank, worldSize: worldSize, step: step, own: true)]
                ?? e[ReplicaInfo(rank: rank, worldSize: worldSize, step: step, own: false)]
        }
    }

    /// Host memory held, in bytes.
    public var bytes: Int { entries.withLock { $0.values.reduce(0) { $0 + $1.bytes } } }
}
