import Evaluation
import Foundation
import Training
import Zero

/// One control-plane message (JSON, one ZeroMQ frame). See docs/protocol.md, "Control plane".
public struct ControlMessage: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// worker → coordinator: join the job.
        case register
        /// coordinator → worker: not admitted (`reason`).
        case refused
        /// coordinator → worker: ranks, config, ring neighbours, data.
        case assign
        /// worker → coordinator: every device built its model and joined the ring.
        case ready
        /// coordinator → workers: run update `step` (with parameter checksums if `checksum`).
        case step
        /// worker → coordinator: update `step` finished (`metrics`, `checksums`, timings).
        case stepDone = "step_done"
        /// coordinator → workers: every rank snapshots its shard of the state after update `step`
        /// and writes it into `directory`'s pending folder in the background.
        case checkpoint
        /// worker → coordinator: its ranks' shards of checkpoint `step` are written (`shards`);
        /// once every rank's is in, the coordinator writes the manifest and commits.
        case checkpointDone = "checkpoint_done"
        /// worker → coordinator: a shard of checkpoint `step` could not be written (`reason`: the
        /// disk is full, read-only, …). The devices train on; the coordinator abandons that
        /// checkpoint, or stops the job when it cannot go on without it.
        case checkpointFailed = "checkpoint_failed"
        /// both ways, every heartbeat interval.
        case heartbeat
        /// coordinator → workers: stop now (`reason`).
        case shutdown
        /// worker → coordinator: stopped cleanly.
        case bye
        /// worker → coordinator: a device failed (`reason`, `epoch`); the coordinator decides
        /// (fault_tolerance.policy): recover, or shut the job down.
        case failed
        /// worker → coordinator: send bytes `offset ..< offset+length` of the token file `path` (a
        /// worker that cannot see it: TokenFetch).
        case fetch
        /// coordinator → worker: those bytes (`data`, `crc` = their CRC-32C, `size` = the file's), or `reason`.
        case chunk
        /// coordinator → workers: the membership ends (`epoch` is the next one, `reason`): stop the
        /// devices, bind new ring links and register again.
        case reset
    }

    public var kind: Kind
    // register
    public var protocolVersion: Int?
    public var build: String?
    public var configHash: String?
    public var expectedWorldSize: Int?
    /// register: the launcher's index of the worker (torchrun RANK, SLURM_PROCID, JOB_COMPLETION_INDEX);
    /// when every worker has one, ranks are given in its order.
    public var launchRank: Int?
    public var devices: Int?
    public var endpoints: [String]?
    public var host: String?
    public var pid: Int?
    /// register: which processes share memory with this one through /dev/shm (boot id and
    /// /dev/shm's device and inode), for same-host replicas; nil where there is none.
    public var memoryDomain: String?
    /// register: the shards the worker holds in memory (in-memory replicas).
    public var replicas: [ReplicaInfo]?
    /// register: `security.job_token`; a coordinator with a token refuses a registration without it.
    public var jobToken: String?
    /// register: with keys, whether the worker encrypts its ring links (security.encrypt_data_plane).
    public var encryptsRing: Bool?
    /// register: the worker's CURVE public key as the coordinator's ZAP handler authenticated it.
    /// Set by the coordinator's daemon from the connection, never taken from the message.
    public var publicKey: String?
    // refused, shutdown, failed
    public var reason: String?
    /// failed: a device stopped after fault_tolerance.max_skipped_steps non-finite updates in a row.
    public var nonFinite: Bool?
    // assign
    public var ranks: [Int]?
    public var worldSize: Int?
    public var jobID: UInt64?
    public var epoch: UInt64?
    public var config: TrainConfig?
    public var successors: [String]?
    /// assign: the data endpoint of each of the worker's ranks' ring predecessors.
    public var predecessors: [String]?
    /// assign: every rank's CURVE public key (index = rank), when the job's workers are authenticated.
    public var ringKeys: [String]?
    /// assign: every rank's worker's memory domain (index = rank; nil: unknown).
    public var memoryDomains: [String?]?
    /// assign: the data files a worker that cannot see them fetches (TokenFetch).
    public var dataFiles: [String]?
    public var resumeFrom: String?
    /// assign: restore from the workers' in-memory replicas instead of `resumeFrom`.
    public var restore: ReplicaRestore?
    /// Which rank owns which elements of the flat buffers (ZeRO shards), computed by the coordinator.
    public var partitionPlan: PartitionPlan?
    /// Where a rank whose collective fails writes its flight recorder (run directory/forensics).
    public var forensicsDirectory: String?
    // step, step_done, checkpoint
    public var step: Int?
    public var checksum: Bool?
    /// step: after the update, refresh the in-memory replicas (fault_tolerance.replica_interval).
    public var replicate: Bool?
    public var metrics: StepMetrics?
    /// Per device of the worker (in rank order), per parameter tensor.
    public var checksums: [[UInt64]]?
    public var computeSeconds: Double?
    public var exposedCommunicationSeconds: Double?
    /// Payload bytes sent in the step, per device (rank order), by collective.
    public var bytesSent: [[String: Int]]?
    /// Device-memory ledger per device (rank order).
    public var memory: [MemoryLedger.Snapshot]?
    public var directory: String?
    public var path: String?
    // fetch, chunk
    public var offset: Int?
    public var length: Int?
    public var size: Int?
    public var data: Data?
    public var crc: UInt32?
    /// checkpoint_done: per device (rank order), its shard file and rank 0's data cursor and schedule.
    public var shards: [ShardRecord]?
    /// step_done: seconds the slowest device spent on checkpoint snapshots since its previous step.
    public var checkpointSeconds: Double?
    /// step_done: seconds the slowest device spent on its replica snapshot after the step.
    public var replicaSeconds: Double?
    /// step_done: per device (rank order), its own time split of the step (monitoring).
    public var rankSeconds: [RankSeconds]?
    /// step_done: the worker's ranks' shares of the held-out evaluation after the step, summed (training.eval_interval).
    public var validation: LanguageModelTotals?

    public init(_ kind: Kind) { self.kind = kind }

    /// One rank's time split of a step (seconds): compute, communication that did not overlap
    /// it, reading its micro-batches (data loading), and checkpoint snapshots since its previous step.
    public struct RankSeconds: Codable, Sendable, Equatable {
        public var compute: Double
        public var exposedCommunication: Double
        public var checkpoint: Double
        public var data: Double
        public init(compute: Double, exposedCommunication: Double, checkpoint: Double, data: Double = 0) {
            self.compute = compute
            self.exposedCommunication = exposedCommunication
            self.checkpoint = checkpoint
            self.data = data
        }
    }

    public func encoded() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(self)) ?? Data()
    }


    /// Version of this control protocol; a worker with another is refused.
    public static let protocolVersion = 2
    /// The build; coordinator and workers must run the same one.
    public static let build = "zerotrain-0.1.0"
}
