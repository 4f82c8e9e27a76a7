import Evaluation
import Foundation
import Model
import Training
import Zero

/// The coordinator's protocol logic as a value type: events in, actions out. No sockets, no
/// clocks — time arrives in the events — so every path is unit-tested directly.
public struct CoordinatorState {
    public enum Event {
        case message(from: Data, ControlMessage, now: Double)
        case tick(now: Double)
        /// SIGINT/SIGTERM: finish the current update, checkpoint if configured, stop.
        case stopRequested(now: Double)
        /// The daemon carried out `.commit`: the checkpoint of `step` is in `path` (nil: it failed, `error`).
        case committed(step: Int, path: String?, error: String?, now: Double)
    }

    public enum Action: Equatable {
        case send(to: Data, ControlMessage)
        case log(String)
        /// One finished step: metrics, time split, and the payload bytes each rank sent by collective.
        case record(StepMetrics, computeSeconds: Double, exposedCommunicationSeconds: Double, idleSeconds: Double,
                    checkpointSeconds: Double, replicaSeconds: Double, bytesSent: [[String: Int]], memory: [MemoryLedger.Snapshot],
                    rankSeconds: [ControlMessage.RankSeconds])
        /// A checkpoint's files are being written: clear what an aborted earlier attempt at the same step left in its pending folder.
        case prepareCheckpoint(step: Int)
        /// A checkpoint that will not be committed: its pending folder (step-N.tmp) can go.
        case abandonCheckpoint(step: Int)
        /// Every rank's shard of checkpoint `step` is written: write the manifest (from the
        /// membership's `config`, rank 0's record first) and commit; then report `.committed`.
        case commit(step: Int, config: TrainConfig, shards: [ShardRecord])
        /// A worker asked for a chunk of the token file (`fetch`): answer with `TokenFetch.serve`.
        case serveChunk(to: Data, ControlMessage)
        /// The job is over: exit with `code` (0 finished or paused, 1 failed, 130 stopped).
        case exit(code: Int32, message: String)
    }

    public struct WorkerRecord {
        public let id: Data
        public var devices: Int
        public var endpoints: [String]
        public var host: String
        public var pid: Int
        /// The worker's authenticated CURVE public key (nil without security).
        public var publicKey: String?
        /// Which processes share /dev/shm with the worker (same-host replicas), as it registered.
        public var memoryDomain: String?
        /// Shards the worker holds in its memory (in-memory replicas), as it registered.
        public var replicas: [ReplicaInfo] = []
        /// The launcher's index of the worker, if it gave one (ranks follow it).
        public var launchRank: Int?
        public var ranks: [Int] = []
        public var lastSeen: Double
        public var lastSent: Double = 0
        public var ready = false
        public var done: ControlMessage?
        public var gone = false
    }

    /// admitting → starting → running → stopping → finished; `checkpointing` after the last step
    /// (or a stop, a pause, or before growing) until that checkpoint is committed — other checkpoints are
    /// written in the background while the next steps run. A failure while
    /// starting, running or checkpointing goes to recovering (fault_tolerance.policy restart or
    /// elastic), which admits the next membership and goes back to starting.
    public enum Phase: Equatable { case admitting, starting, running, checkpointing, recovering, stopping, finished }

    public let config: TrainConfig
    public let configHash: String
    public let jobID: UInt64
    /// The data files workers may fetch (the token file, or the token shards and their difficulty files).
    public let dataFiles: [String]
    public let checkpointDir: String?
    public let resumeFrom: String?
    /// `--stop-after-step N`: after update N the job checkpoints and exits 0, paused (a later
    /// `--resume` continues it as if it had never stopped); nil, or N ≥ total_steps: no pause.
    public let pauseStep: Int?
    /// `security.job_token`: registrations without it are refused (nil: none needed).
    public let jobToken: String?
    /// With keys: whether the job's ring links are encrypted; a worker that differs is refused (its
    /// links could not connect to the others'). nil: no keys.
    public let ringEncryption: Bool?
    public private(set) var phase = Phase.admitting
    public private(set) var workers: [WorkerRecord] = []
    public private(set) var step: Int
    /// The membership: 1 for the first, one more at every recovery. Every assignment, step and
    /// failure report carries it, so messages of an aborted membership are recognised.
    public private(set) var epoch: UInt64 = 1
    /// The newest checkpoint written in this job (or the one it resumed from): where a recovery restarts.
    public private(set) var lastCheckpoint: (path: String, step: Int)?
    /// Workers that registered while the job was running: admitted at the next recovery.
    public private(set) var standby: [WorkerRecord] = []
    /// Recoveries so far (their times, for fault_tolerance.max_restarts within restart_window_s).
    public private(set) var recoveries: [Double] = []
    /// Every recovery of the job, oldest first: when, why, and the membership it started (monitoring).
    public private(set) var recoveryEvents: [(time: Double, reason: String, epoch: UInt64)] = []
    /// Sequences per step of the first membership (ranks × accumulation × micro-batch), kept across recoveries when the numbers allow.
    public private(set) var globalBatch: Int?
    /// The config the current membership runs (accumulation adjusted for its world size).
    public private(set) var membershipConfig: TrainConfig
    private var recoveryDeadline = 0.0
    /// Steps recorded by an earlier coordinator of this run (see `init`); nil: all steps are this one's.
    private let recordedSteps: Int?
    /// Checkpoint steps the job rolled back to after non-finite streaks (once each).
    private var rolledBack: Set<Int> = []
    /// A rollback is under way: the replicas the workers register with are not used.
    private var discardReplicas = false
    /// Workers told to reset that have not registered again (they get the shutdown if the job ends first).
    private var resetting: [Data] = []
    /// elastic: a worker is standing by and the world is below `cluster.workers`: grow at the next step boundary.
    private var growRequested = false
    /// While recovering to grow the world: the workers expected (the members and those standing
    /// by), so the next membership starts as soon as they are back instead of at the window's end.
    private var growTarget: Int?
    private var stepStartedAt = 0.0
    /// Checkpoints being written: shard records received so far, by step.
    private var pendingCheckpoints: [Int: [ShardRecord]] = [:]
    /// Checkpoints lost in a row (a shard not written, or the commit failed); a commit resets it.
    private var checkpointsLostInARow = 0
    private var stopAfterStep = false
    private var exitCode: Int32 = 0
    public private(set) var exitMessage = ""
    private let names: [String]

    /// - Parameter recordedSteps: for a coordinator started on an existing run, the steps the run's
    ///   metrics log already records (0..<recordedSteps): in-memory replicas newer than that are
    ///   not used, since the steps between would have no record (the previous coordinator died
    ///   after the workers finished them but before it wrote them down).
    public init(config: TrainConfig, configHash: String, jobID: UInt64, dataFiles: [String], startStep: Int = 0,
                resumeFrom: String? = nil, recordedSteps: Int? = nil, jobToken: String? = nil, ringEncryption: Bool? = nil,
                pauseStep: Int? = nil) {
        self.recordedSteps = recordedSteps
        self.pauseStep = pauseStep.flatMap { $0 < config.training.totalSteps ? $0 : nil }
        self.jobToken = jobToken
        self.ringEncryption = ringEncryption
        self.config = config
        self.configHash = configHash
        self.jobID = jobID
        self.dataFiles = dataFiles
        self.checkpointDir = config.training.checkpointDir
        self.resumeFrom = resumeFrom
        self.step = startStep
        self.membershipConfig = config
        if let resumeFrom { lastCheckpoint = (resumeFrom, startStep) }
        self.names = ParameterTable(config: config.model).entries.map(\.name)
    }

    private var faultTolerance: FaultToleranceConfig { config.faultTolerance }

    public var worldSize: Int { workers.reduce(0) { $0 + $1.devices } }

    /// When the loop must call `.tick` at the latest if no message comes first (nil: only on
    /// messages): the next heartbeat to send, the next worker to declare lost, or the end of the
    /// shutdown grace.
    public var nextDeadline: Double? {
        switch phase {
        case .finished: return nil
        case .stopping: return stepStartedAt + heartbeatTimeout
        case .recovering:
            let live = workers.filter { !$0.gone }
            return (live.map { $0.lastSeen + heartbeatTimeout } + [recoveryDeadline]).min()
        default:
            let live = workers.filter { !$0.gone }
            return live.flatMap { [$0.lastSent + heartbeatInterval, $0.lastSeen + heartbeatTimeout] }.min()
        }
    }
    private var heartbeatInterval: Double { Double(config.cluster.heartbeatIntervalMs) / 1000 }
    private var heartbeatTimeout: Double { Double(config.cluster.heartbeatTimeoutMs) / 1000 }

    public mutating func event(_ event: Event) -> [Action] {
        switch event {
        case let .message(from, message, now):
            return received(message, from: from, now: now)
        case let .tick(now):
            return tick(now)
        case let .committed(step, path, error, now):
            return committed(step: step, path: path, error: error, now: now)
        case let .stopRequested(now):
            switch phase {
            case .admitting, .starting:
                return finish(code: 130, message: "stopped before training started", now: now)
            case .recovering:
                return finish(code: 130, message: "stopped while recovering, at step \(step)", now: now)
            case .running, .checkpointing:
                if !stopAfterStep {
                    stopAfterStep = true
                    return [.log("stopping after step \(step + 1)" + (checkpointDir != nil ? " (with a checkpoint)" : ""))]
                }
                return []
            case .stopping, .finished:
                return []
            }
        }
    }

    private func index(of id: Data) -> Int? { workers.firstIndex { $0.id == id } }

    private mutating func received(_ m: ControlMessage, from id: Data, now: Double) -> [Action] {
        if let i = index(of: id) { workers[i].lastSeen = now }
        switch m.kind {
        case .register:
            return register(m, from: id, now: now)
        case .ready:
            guard let i = index(of: id), phase == .starting, (m.epoch ?? epoch) == epoch else { return [] }
            workers[i].ready = true
            if workers.allSatisfy(\.ready) {
                if step >= config.training.totalSteps {
                    return finish(code: 0, message: "the job has already finished: step \(step) of \(config.training.totalSteps)", now: now)
                }
                if let pauseStep, step >= pauseStep {
                    return finish(code: 0, message: "paused at step \(step) of \(config.training.totalSteps) (--stop-after-step \(pauseStep)); nothing to run", now: now)
                }
                phase = .running
                return [.log("all \(worldSize) ranks ready on \(workers.count) worker(s); training from step \(step)")] + startStep(now: now)
            }
            return []
        case .stepDone:
            guard let i = index(of: id), phase == .running, m.step == step, (m.epoch ?? epoch) == epoch else { return [] }
            workers[i].done = m
            guard workers.allSatisfy({ $0.done != nil }) else { return [] }
            return stepFinished(now: now)
        case .checkpointDone:
            guard let i = index(of: id), (m.epoch ?? epoch) == epoch, let shardStep = m.step,
                  pendingCheckpoints[shardStep] != nil, let shards = m.shards else { return [] }
            // Only the worker's own ranks' shards of this step, each once.
            let have = Set(pendingCheckpoints[shardStep]!.map(\.rank))
            guard shards.allSatisfy({ workers[i].ranks.contains($0.rank) && $0.step == shardStep && !have.contains($0.rank) }),
                  Set(shards.map(\.rank)).count == shards.count else {
                return [.log("security: ignored a checkpoint_done from \(describe(workers[i])) naming shards that are not its ranks' of step \(shardStep)")]
            }
            pendingCheckpoints[shardStep]! += shards
            guard pendingCheckpoints[shardStep]!.count == worldSize else { return [] }
            let all = pendingCheckpoints.removeValue(forKey: shardStep)!
            return [.commit(step: shardStep, config: membershipConfig, shards: all)]
        case .checkpointFailed:
            guard let i = index(of: id), (m.epoch ?? epoch) == epoch, let lost = m.step,
                  pendingCheckpoints.removeValue(forKey: lost) != nil else { return [] }
            return checkpointLost(step: lost, reason: "\(describe(workers[i])): \(m.reason ?? "unknown error")", now: now)
        case .failed:
            guard let i = index(of: id) else { return [] }
            let reason = "\(describe(workers[i])) failed: \(m.reason ?? "unknown error")"
            if m.nonFinite == true {
                // fault_tolerance.max_skipped_steps non-finite updates in a row: roll back to the last
                // checkpoint (not to replicas, which may hold the diverging state), once per checkpoint.
                guard (m.epoch ?? epoch) == epoch, [.starting, .running, .checkpointing].contains(phase) else { return [] }
                let target = lastCheckpoint?.step ?? 0
                guard faultTolerance.onNonFiniteStreak == .rollback, faultTolerance.recovers, !rolledBack.contains(target) else {
                    return finish(code: 1, message: reason + (faultTolerance.onNonFiniteStreak == .rollback
                        ? "; the job already rolled back to step \(target) once and diverged again" : ""), now: now)
                }
                rolledBack.insert(target)
                for j in workers.indices { workers[j].replicas = [] }
                discardReplicas = true
                return recover(reason + "; rolling back to the last checkpoint", now: now)
            }
            if faultTolerance.recovers {
                // Reports of a membership already aborted (every survivor reports the lost peer) change nothing.
                guard (m.epoch ?? epoch) == epoch, [.starting, .running, .checkpointing].contains(phase) else { return [] }
                return recover(reason, now: now)
            }
            // A worker that failed is leaving and will not say bye: do not wait for it.
            workers[i].gone = true
            return finish(code: 1, message: reason, now: now)
        case .bye:
            resetting.removeAll { $0 == id }
            guard let i = index(of: id) else { return [] }
            workers[i].gone = true
            if phase == .stopping && workers.allSatisfy(\.gone) {
                phase = .finished
                return [.exit(code: exitCode, message: exitMessage)]
            }
            return []
        case .heartbeat:
            return []
        case .fetch:
            // A worker without the token file: answered by the daemon (it reads the file).
            guard index(of: id) != nil else { return [] }
            return [.serveChunk(to: id, m)]
        default:
            return [.log("ignored unexpected \(m.kind.rawValue) message")]
        }
    }

    private mutating func register(_ m: ControlMessage, from id: Data, now: Double) -> [Action] {
        if index(of: id) != nil { return [] }   // a repeated registration from the same socket
        func refuse(_ reason: String) -> [Action] {
            var r = ControlMessage(.refused)
            r.reason = reason
            return [.send(to: id, r), .log("refused a worker (pid \(m.pid ?? 0) on \(m.host ?? "?")): \(reason)")]
        }
        if m.protocolVersion != ControlMessage.protocolVersion {
            return refuse("protocol version \(m.protocolVersion.map(String.init) ?? "none") differs from the coordinator's \(ControlMessage.protocolVersion)")
        }
        if let token = jobToken, m.jobToken != token {
            return refuse(m.jobToken == nil ? "no job token given (security.job_token); this job requires one"
                                            : "the job token differs from this job's (the worker was started for another job)")
        }
        if let encrypt = ringEncryption, m.encryptsRing != encrypt {
            return refuse("security.encrypt_data_plane differs: the job's ring links are " + (encrypt ? "encrypted" : "in the clear"))
        }
        if m.build != ControlMessage.build {
            return refuse("build \(m.build ?? "unknown") differs from the coordinator's \(ControlMessage.build)")
        }
        if let h = m.configHash, h != configHash {
            return refuse("config hash \(h) differs from the job's \(configHash) (the worker was given another config file)")
        }
        guard let devices = m.devices, devices >= 1, let endpoints = m.endpoints, endpoints.count == devices else {
            return refuse("malformed registration (devices and endpoints do not match)")
        }
        var record = WorkerRecord(id: id, devices: devices, endpoints: endpoints, host: m.host ?? "?", pid: m.pid ?? 0, lastSeen: now)
        record.replicas = m.replicas ?? []
        record.publicKey = m.publicKey
        record.memoryDomain = m.memoryDomain
        record.launchRank = m.launchRank
        switch phase {
        case .admitting, .recovering:
            break
        case .starting, .running, .checkpointing:
            guard faultTolerance.recovers else { return refuse("the job already has its \(config.cluster.workers) worker(s)") }
            // A replacement that arrived before the failure was noticed, or (elastic) a worker that grows the world.
            guard !standby.contains(where: { $0.id == id }) else { return [] }
            standby.append(record)
            if faultTolerance.policy == .elastic && workers.count < config.cluster.workers { growRequested = true }
            return [.log("worker pid \(m.pid ?? 0) on \(m.host ?? "?") is standing by for the next membership")]
        case .stopping, .finished:
            return refuse("the job is ending")
        }
        resetting.removeAll { $0 == id }
        workers.append(record)
        let actions: [Action] = [.log("worker \(workers.count)/\(config.cluster.workers) joined: pid \(m.pid ?? 0) on \(m.host ?? "?"), \(devices) device(s)")]
        guard workers.count == (growTarget ?? config.cluster.workers) else { return actions }
        // World size is known: refuse the job if a worker expected another.
        if let expected = m.expectedWorldSize, expected != worldSize {
            workers.removeLast()
            return refuse("world size \(expected) expected by the worker, but the job has \(worldSize + devices)")
        }
        return actions + assign(now: now)
    }

    /// Gives the admitted workers their ranks: the next membership starts.
    private mutating func assign(now: Double) -> [Action] {
        growTarget = nil
        var actions: [Action] = []
        // The global batch of the first membership is kept when the new world size divides it.
        var jobConfig = config
        let micro = config.training.microBatchSize
        if let g = globalBatch {
            let perStep = worldSize * micro
            let accumulation = max(1, Int((Double(g) / Double(perStep)).rounded()))
            jobConfig.training.gradientAccumulationSteps = accumulation
            if accumulation * perStep == g {
                if accumulation != config.training.gradientAccumulationSteps {
                    actions.append(.log("\(worldSize) ranks × accumulation \(accumulation) keep the global batch of \(g) sequences"))
                }
            } else {
                actions.append(.log("the global batch changes from \(g) to \(accumulation * perStep) sequences (\(worldSize) ranks × accumulation \(accumulation) × micro-batch \(micro)); the sample order continues where it stood"))
            }
        } else {
            globalBatch = worldSize * micro * config.training.gradientAccumulationSteps
        }
        membershipConfig = jobConfig
        // The newest consistent state: the workers' in-memory shards when they cover every rank
        // at a step no older than the last checkpoint, else the checkpoint.
        let restore = discardReplicas ? nil : replicaRestore()
        discardReplicas = false
        // A launcher that numbered its workers (torchrun, Slurm, an indexed Job) gets its order;
        // a restore from replicas keeps the order that leaves each shard where it is.
        if restore == nil, workers.allSatisfy({ $0.launchRank != nil }) {
            workers.sort { $0.launchRank! < $1.launchRank! }
        }
        let resumeFolder = restore == nil ? lastCheckpoint?.path : nil
        step = restore?.step ?? lastCheckpoint?.step ?? 0
        // Ranks worker-major; each rank's successor is the next rank's endpoint, wrapping around.
        var rank = 0
        var all: [String] = []
        var keys: [String] = []
        var domains: [String?] = []
        for i in workers.indices {
            workers[i].ranks = Array(rank..<(rank + workers[i].devices))
            rank += workers[i].devices
            all += workers[i].endpoints
            if let key = workers[i].publicKey { keys += Array(repeating: key, count: workers[i].devices) }
            domains += Array(repeating: workers[i].memoryDomain, count: workers[i].devices)
        }
        let ringKeys = keys.count == all.count ? keys : nil
        phase = .starting
        let plan = PartitionPlan(table: ParameterTable(config: config.model), worldSize: worldSize)
        for w in workers {
            var a = ControlMessage(.assign)
            a.ranks = w.ranks
            a.worldSize = worldSize
            a.jobID = jobID
            a.epoch = epoch
            a.config = jobConfig
            a.successors = w.ranks.map { all[($0 + 1) % all.count] }
            a.predecessors = w.ranks.map { all[($0 - 1 + all.count) % all.count] }
            a.ringKeys = ringKeys
            a.memoryDomains = domains.contains { $0 != nil } ? domains : nil
            a.dataFiles = dataFiles
            a.resumeFrom = resumeFolder
            a.restore = restore
            a.partitionPlan = plan
            a.step = step
            actions.append(.send(to: w.id, a))
        }
        actions.append(.log("assigned \(worldSize) ranks (membership \(epoch)); global batch \(worldSize * micro * jobConfig.training.gradientAccumulationSteps) sequences"
                            + (resumeFolder.map { "; from \($0) at step \(step)" } ?? "")))
        if let restore {
            let moved = restore.transfers.map { "rank \($0.rank) from rank \($0.root)" }
            actions.append(.log("membership \(epoch) restores step \(restore.step) from the workers' in-memory replicas, no checkpoint file read ("
                                + (moved.isEmpty ? "every rank's shard is local" : moved.joined(separator: ", ") + "; the others local") + ")"))
        }
        return actions
    }

    /// Whether the admitted workers' in-memory shards cover every rank of this world size at a
    /// step no older than the last checkpoint; if so, orders the workers so that each keeps the
    /// ranks whose shards it holds, and says where every other rank's shard comes from.
    private mutating func replicaRestore() -> ReplicaRestore? {
        let n = worldSize
        let held = workers.map { w in w.replicas.filter { $0.worldSize == n } }
        let floor = lastCheckpoint?.step ?? 1, ceiling = recordedSteps ?? .max
        for s in Set(held.flatMap { $0.map(\.step) }).sorted(by: >) where s >= floor && s <= ceiling {
            guard (0..<n).allSatisfy({ r in held.contains { $0.contains { $0.step == s && $0.rank == r } } }) else { continue }
            // Workers whose own shards at s form the block starting at r keep it; the others fill the gaps.
            var byStart: [Int: Int] = [:]
            for (i, h) in held.enumerated() {
                let own = h.filter { $0.step == s && $0.own }.map(\.rank).sorted()
                if own.count == workers[i].devices, let first = own.first, own == Array(first..<(first + own.count)), byStart[first] == nil {
                    byStart[first] = i
                }
            }
            var order: [Int] = [], rest = workers.indices.filter { !byStart.values.contains($0) }
            var next = 0
            while order.count < workers.count {
                let i: Int
                if let w = byStart[next], !order.contains(w) { i = w } else if !rest.isEmpty { i = rest.removeFirst() } else {
                    i = byStart.values.sorted().first { !order.contains($0) }!
                }
                order.append(i)
                next += workers[i].devices
            }
            workers = order.map { workers[$0] }
            // By position in the new order: what each worker holds, and the ranks it gets.
            let holders = order.map { held[$0] }
            var firstRank: [Int] = [], workerOfRank: [Int] = []
            for (w, worker) in workers.enumerated() {
                firstRank.append(workerOfRank.count)
                workerOfRank += Array(repeating: w, count: worker.devices)
            }
            func holds(_ w: Int, _ r: Int) -> Bool { holders[w].contains { $0.step == s && $0.rank == r } }
            let sources: [Int?] = (0..<n).map { r in
                holds(workerOfRank[r], r) ? nil : firstRank[holders.indices.first { holds($0, r) }!]
            }
            return ReplicaRestore(step: s, sources: sources)
        }
        return nil
    }

    // MARK: recovery

    /// A worker was lost or a device failed: under `fault_tolerance.policy` restart or elastic the
    /// membership ends — every step in flight is abandoned on every rank, so no update is applied
    /// on some ranks and not others — the workers are told to reset, and the next membership
    /// (survivors, a returning worker, replacements) restarts from the last checkpoint.
    private mutating func recover(_ reason: String, now: Double) -> [Action] {
        // Checkpoints not yet committed are abandoned (their pending folders are never used).
        pendingCheckpoints = [:]
        let window = faultTolerance.restartWindowSeconds
        recoveries = recoveries.filter { now - $0 < window } + [now]
        if recoveries.count > faultTolerance.maxRestarts {
            return finish(code: 1, message: "\(reason); giving up after \(faultTolerance.maxRestarts) recoveries within \(Int(window)) s (fault_tolerance.max_restarts)", now: now)
        }
        epoch += 1
        recoveryEvents.append((now, reason, epoch))
        phase = .recovering
        recoveryDeadline = now + faultTolerance.rejoinTimeoutSeconds
        growTarget = growRequested ? min(workers.filter { !$0.gone }.count + standby.count, config.cluster.workers) : nil
        growRequested = false
        var reset = ControlMessage(.reset)
        reset.epoch = epoch
        reset.reason = reason
        let fallback = lastCheckpoint.map { "\($0.path) (step \($0.step))" } ?? "the initial state (no checkpoint yet)"
        var actions: [Action] = [.log("recovery \(recoveries.count): \(reason); membership \(epoch) restarts from "
                                      + (faultTolerance.replicaInterval > 0 && !discardReplicas ? "the workers' in-memory replicas if they cover every rank, else " : "")
                                      + fallback
                                      + "; waiting up to \(Int(faultTolerance.rejoinTimeoutSeconds)) s for \(config.cluster.workers) worker(s)")]
        for w in workers where !w.gone {
            actions.append(.send(to: w.id, reset))
            resetting.append(w.id)
        }
        // Workers standing by join the next membership, up to the job's size.
        workers = Array(standby.prefix(config.cluster.workers))
        standby = Array(standby.dropFirst(config.cluster.workers))
        for i in workers.indices { workers[i].lastSeen = now }
        if workers.count == (growTarget ?? config.cluster.workers) { return actions + assign(now: now) }
        return actions
    }

    /// The rejoin window ended without a full membership.
    private mutating func recoveryTimedOut(now: Double) -> [Action] {
        let have = workers.filter { !$0.gone }.count
        if faultTolerance.policy == .elastic && have >= faultTolerance.minWorkers && have >= 1 {
            workers.removeAll(where: \.gone)
            return [.log("no replacement within \(Int(faultTolerance.rejoinTimeoutSeconds)) s: continuing on \(have) worker(s) (fault_tolerance.policy elastic)")]
                + assign(now: now)
        }
        return finish(code: 1, message: "no replacement worker registered within \(Int(faultTolerance.rejoinTimeoutSeconds)) s (fault_tolerance.rejoin_timeout_s); \(have) of \(config.cluster.workers) worker(s) present", now: now)
    }

    private mutating func startStep(now: Double) -> [Action] {
        stepStartedAt = now
        let interval = config.cluster.divergenceCheckInterval
        var m = ControlMessage(.step)
        m.step = step
        m.epoch = epoch
        let replicas = faultTolerance.replicaInterval
        m.replicate = replicas > 0 && (step + 1) % replicas == 0 && step + 1 < config.training.totalSteps ? true : nil
        m.checksum = interval > 0 && ((step + 1) % interval == 0 || step + 1 == config.training.totalSteps)
        var actions: [Action] = []
        for i in workers.indices {
            workers[i].done = nil
            workers[i].lastSent = now
            actions.append(.send(to: workers[i].id, m))
        }
        return actions
    }

    private mutating func stepFinished(now: Double) -> [Action] {
        let reports = workers.map { $0.done! }
        var actions: [Action] = []
        // Divergence guard: every rank's checksums must equal rank 0's.
        let perRank: [(rank: Int, sums: [UInt64])] = workers.flatMap { w in
            zip(w.ranks, w.done?.checksums ?? []).map { ($0, $1) }
        }
        if let reference = perRank.first {
            for other in perRank.dropFirst() where other.sums != reference.sums {
                let t = Array(zip(reference.sums, other.sums)).firstIndex { $0.0 != $0.1 } ?? 0
                let name = t < names.count ? names[t] : "tensor \(t)"
                return finish(code: 1, message: "parameters diverged after step \(step + 1): rank \(other.rank) differs from rank \(reference.rank), first in \(name)", now: now)
            }
        }
        if let metrics = reports[0].metrics {
            // The split of the slowest worker's slowest device: its compute and exposed
            // communication add up to its step, and the rest of the step's wall time is overhead.
            let slowest = reports.max { ($0.computeSeconds ?? 0) + ($0.exposedCommunicationSeconds ?? 0)
                < ($1.computeSeconds ?? 0) + ($1.exposedCommunicationSeconds ?? 0) }
            let compute = slowest?.computeSeconds ?? 0
            let exposed = slowest?.exposedCommunicationSeconds ?? 0
            var m = metrics
            m.seconds = now - stepStartedAt
            // The workers' shares of the evaluation, summed in worker order.
            m.validation = reports.compactMap(\.validation).reduce(nil) { ($0 ?? LanguageModelTotals()) + $1 }
            actions.append(.record(m, computeSeconds: compute, exposedCommunicationSeconds: exposed,
                                   idleSeconds: max(0, m.seconds - compute - exposed),
                                   checkpointSeconds: reports.compactMap(\.checkpointSeconds).max() ?? 0,
                                   replicaSeconds: reports.compactMap(\.replicaSeconds).max() ?? 0,
                                   bytesSent: reports.flatMap { $0.bytesSent ?? [] },
                                   memory: reports.flatMap { $0.memory ?? [] },
                                   rankSeconds: reports.flatMap { $0.rankSeconds ?? [] }))
        }
        step += 1
        let interval = config.training.checkpointInterval
        let pausing = step == pauseStep
        let due = checkpointDir != nil && (step == config.training.totalSteps || pausing || stopAfterStep || growRequested || (interval > 0 && step % interval == 0))
        if due, let dir = checkpointDir {
            // Every rank snapshots its own shard and writes it in the background; nothing is
            // gathered. Training goes on unless the job waits for this checkpoint.
            var c = ControlMessage(.checkpoint)
            c.step = step
            c.epoch = epoch
            c.directory = dir
            pendingCheckpoints[step] = []
            actions.append(.prepareCheckpoint(step: step))
            actions += workers.map { .send(to: $0.id, c) }
            if step >= config.training.totalSteps || pausing || stopAfterStep || growRequested {
                phase = .checkpointing
                return actions
            }
        }
        return actions + afterCheckpoint(now: now)
    }

    private mutating func committed(step committedStep: Int, path: String?, error: String?, now: Double) -> [Action] {
        guard let path else { return checkpointLost(step: committedStep, reason: error ?? "unknown error", now: now) }
        checkpointsLostInARow = 0
        if committedStep >= lastCheckpoint?.step ?? -1 { lastCheckpoint = (path, committedStep) }
        var actions: [Action] = [.log("checkpoint \(path)")]
        if phase == .checkpointing && committedStep == step {
            phase = .running
            actions += afterCheckpoint(now: now)
        }
        return actions
    }

    /// A checkpoint could not be saved (a shard not written: the disk is full, read-only, …; or
    /// the commit failed). Every rank's training state is intact and a restart would meet the same
    /// disk, so this is not a recovery: the job goes on without that checkpoint, with a warning.
    /// It stops (exit 1) when it cannot go on without it — the final checkpoint, SIGTERM's, a
    /// grow's — or on the second lost checkpoint in a row, before more work rests on the last one.
    private mutating func checkpointLost(step lost: Int, reason: String, now: Double) -> [Action] {
        checkpointsLostInARow += 1
        let last = lastCheckpoint.map { "\($0.path) (step \($0.step))" } ?? "none"
        let message = "cannot save the checkpoint of step \(lost): \(reason)"
        if (phase == .checkpointing && lost == step) || checkpointsLostInARow >= 2 {
            let why = checkpointsLostInARow >= 2 ? "the second checkpoint in a row lost" : "the job cannot finish without it"
            return [.abandonCheckpoint(step: lost)]
                + finish(code: 1, message: "\(message); the job stops (\(why)); the last checkpoint is \(last): free the space and resume from it", now: now)
        }
        return [.abandonCheckpoint(step: lost),
                .log("warning: \(message); training goes on, the last checkpoint is \(last) (a second lost checkpoint in a row stops the job)")]
    }

    private mutating func afterCheckpoint(now: Double) -> [Action] {
        if step >= config.training.totalSteps {
            return finish(code: 0, message: "finished \(step) steps", now: now)
        }
        if stopAfterStep {
            return finish(code: 130, message: "stopped at step \(step)", now: now)
        }
        if step == pauseStep {
            return finish(code: 0, message: "paused at step \(step) of \(config.training.totalSteps) (--stop-after-step); --resume continues it", now: now)
        }
        if growRequested && (checkpointDir == nil || lastCheckpoint?.step == step) {
            return recover("\(standby.count) worker(s) standing by: growing the world", now: now)
        }
        return startStep(now: now)
    }

    private mutating func finish(code: Int32, message: String, now: Double) -> [Action] {
        exitCode = code
        exitMessage = message
        var actions: [Action] = [.log(message)]
        var s = ControlMessage(.shutdown)
        s.reason = message
        for w in workers where !w.gone { actions.append(.send(to: w.id, s)) }
        for id in resetting where index(of: id) == nil { actions.append(.send(to: id, s)) }
        for w in standby { actions.append(.send(to: w.id, s)) }
        resetting = []
        standby = []
        if workers.allSatisfy(\.gone) || workers.isEmpty {
            phase = .finished
            return actions + [.exit(code: code, message: message)]
        }
        phase = .stopping
        stepStartedAt = now   // the shutdown grace period starts now
        return actions
    }

    private func describe(_ w: WorkerRecord) -> String {
        "worker pid \(w.pid) on \(w.host) (ranks \(w.ranks.map(String.init).joined(separator: ",")))"
    }

    private mutating func tick(_ now: Double) -> [Action] {
        var actions: [Action] = []
        if phase == .stopping {
            // Workers that do not say bye within a heartbeat timeout are given up on.
            if now >= stepStartedAt + heartbeatTimeout {
                phase = .finished
                return [.log("not every worker confirmed the shutdown"), .exit(code: exitCode, message: exitMessage)]
            }
            return []
        }
        guard phase != .finished else { return [] }
        if phase == .recovering {
            for i in workers.indices where !workers[i].gone && now >= workers[i].lastSeen + heartbeatTimeout {
                workers[i].gone = true
                actions.append(.log("lost \(describe(workers[i])) while recovering"))
            }
            workers.removeAll(where: \.gone)
            return now >= recoveryDeadline ? actions + recoveryTimedOut(now: now) : actions
        }
        for i in workers.indices where !workers[i].gone {
            if now >= workers[i].lastSeen + heartbeatTimeout {
                workers[i].gone = true
                let reason = "lost \(describe(workers[i])): no message for \(String(format: "%.1f", now - workers[i].lastSeen)) s"
                if faultTolerance.recovers && phase != .admitting { return recover(reason, now: now) }
                return finish(code: 1, message: reason, now: now)
            }
            if now >= workers[i].lastSent + heartbeatInterval {
                workers[i].lastSent = now
                actions.append(.send(to: workers[i].id, ControlMessage(.heartbeat)))
            }
        }
        return actions
    }
}
