import Checkpoint
import Common
import Evaluation
import Foundation
import Training
import Zero

/// What a device reports to its worker's loop (from the device's thread, through a wake-up).
public enum DeviceReport: Sendable, Equatable {
    /// The device built its model (and loaded the checkpoint) and joined the ring.
    case ready(device: Int)
    case stepDone(device: Int, StepReport)
    /// The device's shard of a checkpoint is written (in the background, while training went on).
    case checkpointWritten(device: Int, ShardRecord)
    /// The device's shard of checkpoint `step` could not be written; the device trains on.
    case checkpointFailed(device: Int, step: Int, DeviceFailure)
    /// The device failed and stopped (a collective timed out, out of memory, …).
    case failed(device: Int, DeviceFailure)
    /// The device's thread has ended.
    case stopped(device: Int)
}

/// One device's step, as the worker reports it to the coordinator.
public struct StepReport: Sendable, Equatable {
    public var metrics: StepMetrics
    /// Per parameter tensor, FNV-1a 64 of the bytes (when the divergence check asked for them).
    public var checksums: [UInt64]
    public var computeSeconds: Double
    public var exposedCommunicationSeconds: Double
    /// Payload bytes the rank sent in the step, by collective.
    public var bytesSent: [String: Int]
    public var memory: MemoryLedger.Snapshot
    /// Seconds the device spent on checkpoints since its previous step: taking the snapshot, and
    /// waiting for the previous shard write to end (the write itself runs in the background).
    public var checkpointSeconds: Double = 0
    /// Seconds the device spent on the in-memory replica after the step (its snapshot; the transfer runs in the background).
    public var replicaSeconds: Double = 0
    /// Seconds of the step spent reading micro-batches (included in `computeSeconds`).
    public var dataSeconds: Double = 0
    /// The rank's share of the held-out evaluation after the step (`training.eval_interval`); nil when none ran.
    public var validation: LanguageModelTotals?

    public init(metrics: StepMetrics, checksums: [UInt64], computeSeconds: Double, exposedCommunicationSeconds: Double,
                bytesSent: [String: Int], memory: MemoryLedger.Snapshot) {
        self.metrics = metrics
        self.checksums = checksums
        self.computeSeconds = computeSeconds
        self.exposedCommunicationSeconds = exposedCommunicationSeconds
        self.bytesSent = bytesSent
        self.memory = memory
    }
}

/// A device's failure: its rank and the error, kept whole (compared by description).
public struct DeviceFailure: ZeroTrainError, Sendable, Equatable {
    public enum Code: String, Sendable { case deviceFailed }
    public let rank: Int
    public let error: any Error
    public init(rank: Int, error: any Error) { self.rank = rank; self.error = error }
    public var code: Code { .deviceFailed }
    public var message: String { "rank \(rank): \(Self.oneLine(error))" }
    public var cause: (any Error)? { error }
    public var kind: ErrorKind { .runtime }
    public static func == (a: DeviceFailure, b: DeviceFailure) -> Bool { a.description == b.description }
}

/// What a worker's devices are asked to do.
public enum DeviceOrder: Sendable, Equatable {
    case step(Int, checksum: Bool, replicate: Bool)
    case checkpoint(directory: String)
}

/// The worker's protocol logic as a value type: events in, actions out. No sockets, no threads,
/// no clock — time arrives in the events (seconds on any monotonic clock) — so every path is
/// unit-tested directly (WorkerStateTests). `nextDeadline` says when the loop must call again
/// with `.tick` if nothing else happens first; every event runs the timers, so heartbeats and
/// timeouts keep working while messages stream in.
public struct WorkerState {
    public struct Settings: Sendable {
        public var coordinator: String
        public var devices: Int
        /// The data endpoint of each device (bound before registering).
        public var endpoints: [String]
        public var host: String
        public var pid: Int
        public var protocolVersion = ControlMessage.protocolVersion
        public var build = ControlMessage.build
        /// When set, the coordinator refuses this worker unless its config matches.
        public var configHash: String?
        public var expectedWorldSize: Int?
        /// The launcher's index of this worker (torchrun RANK, SLURM_PROCID): ranks follow it.
        public var launchRank: Int?
        /// How long to keep trying to reach the coordinator, in seconds.
        public var connectTimeoutSeconds = 60.0
        /// The job token (`security.job_token`) sent with the registration; the coordinator refuses another.
        public var jobToken: String?
        /// The control plane is CURVE-authenticated (the coordinator's key is pinned): a coordinator
        /// that never answers may have refused the handshake.
        public var authenticated = false
        /// With keys: whether the ring links are encrypted (sent with the registration).
        public var encryptsRing: Bool?
        /// How long stopping devices may take before the worker leaves without them, in seconds.
        public var deviceStopGraceSeconds = 2.0

        public init(coordinator: String, devices: Int, endpoints: [String], host: String, pid: Int) {
            self.coordinator = coordinator
            self.devices = devices
            self.endpoints = endpoints
            self.host = host
            self.pid = pid
        }
    }

    public enum Event: Sendable {
        case start(now: Double)
        case message(ControlMessage, now: Double)
        /// Whether a `register` the loop sent was delivered (false: no connection yet).
        case registrationSent(delivered: Bool, now: Double)
        case device(DeviceReport, now: Double)
        /// SIGTERM to the worker: leave the job.
        case stopRequested(now: Double)
        /// A deadline (`nextDeadline`) passed.
        case tick(now: Double)
        /// New ring links are bound (after `rebindLinks`), with their data endpoints.
        case linksBound([String], now: Double)
    }

    /// What the job gave this worker.
    public struct Assignment: Sendable, Equatable {
        public var ranks: [Int]
        public var worldSize: Int
        public var jobID: UInt64
        public var epoch: UInt64
        public var config: TrainConfig
        /// The data endpoint of each of this worker's ranks' ring successors.
        public var successors: [String]
        public var resumeFrom: String?
        /// Restore from the workers' in-memory replicas instead (then `resumeFrom` is nil).
        public var restore: ReplicaRestore?
        public var partitionPlan: PartitionPlan?
        /// Where a failed collective writes the rank's flight recorder.
        public var forensicsDirectory: String? = nil
        /// The job's data files, fetched from the coordinator when this host cannot see them.
        public var dataFiles: [String] = []
        /// The CURVE public key of every rank of the job (index = rank; nil: the ring is not authenticated by key).
        public var ringKeys: [String]? = nil
        /// The data endpoint of each of this worker's ranks' ring predecessors.
        public var predecessors: [String]? = nil
        /// Every rank's worker's memory domain (same-host replicas go through shared memory).
        public var memoryDomains: [String?]? = nil
    }

    public enum Outcome: Sendable, Equatable {
        /// The coordinator shut the job down and the devices stopped: exit 0.
        case finished
        /// Stopped by a signal: exit 130.
        case stopped
        /// The coordinator refused this worker (bad input: exit 2).
        case refused(String)
        /// The job failed here: exit 1 (with the device's error when a device failed).
        case failed(String, cause: DeviceFailure? = nil)
    }

    public enum Action: Sendable, Equatable {
        /// Send to the coordinator (a failed send of anything but `register` is not retried).
        case send(ControlMessage)
        /// Send a registration and report whether it was delivered (`registrationSent`).
        case register(ControlMessage)
        /// Build one device per rank of the assignment, in order.
        case startDevices(Assignment)
        /// The same order to every device.
        case order(DeviceOrder)
        case stopDevices
        /// The devices have stopped for a new membership: bind fresh ring links (`linksBound`).
        case rebindLinks
        case log(String)
        /// Leave: close the control connection (letting a last message out) and exit.
        case exit(Outcome)
    }

    /// idle → registering → starting → ready ⇄ stepping → stopping → done (checkpoints are
    /// ordered between steps and written in the background: their reports come in any phase). With
    /// fault tolerance (the job's `fault_tolerance.policy` restart or elastic), a failed device
    /// leads to `awaiting` (the coordinator decides), and a reset or a lost coordinator to
    /// `resetting` (devices stop, new links are bound) and back to `registering`.
    public enum Phase: Equatable { case idle, registering, starting, ready, stepping, awaiting, resetting, stopping, done }

    public let settings: Settings
    /// The data endpoints registered: the settings' at first, new ones after every reset.
    public private(set) var endpoints: [String]
    public private(set) var phase = Phase.idle
    public private(set) var assignment: Assignment?
    private var started = 0.0
    private var backoff = 0.05
    private var nextRegistration = 0.0
    private var lastHeard = 0.0
    private var lastBeat = 0.0
    private var readyDevices: Set<Int> = []
    private var stoppedDevices: Set<Int> = []
    private var stepReports: [Int: StepReport] = [:]
    /// Shards written, by checkpoint step and device, until every device's is in.
    private var shardsWritten: [Int: [Int: ShardRecord]] = [:]
    /// Checkpoints (by step) of which a shard could not be written, already reported.
    private var checkpointsFailed: Set<Int> = []
    private var currentStep = 0
    private var checksumRequested = false
    private var stopDeadline = 0.0
    private var outcome = Outcome.finished

    /// How long registering may take: `connectTimeoutSeconds` at first; after a reset, at least the job's rejoin window.
    private var connectWindow: Double

    public init(settings: Settings) {
        self.settings = settings
        self.endpoints = settings.endpoints
        self.connectWindow = settings.connectTimeoutSeconds
    }

    /// Whether the job recovers from failures (known once assigned).
    private var recovers: Bool { assignment?.config.faultTolerance.recovers ?? false }

    private var heartbeatInterval: Double { Double(assignment?.config.cluster.heartbeatIntervalMs ?? 500) / 1000 }
    private var heartbeatTimeout: Double { Double(assignment?.config.cluster.heartbeatTimeoutMs ?? 10_000) / 1000 }

    /// When the loop must call `.tick` at the latest (nil: only on events).
    public var nextDeadline: Double? {
        switch phase {
        case .idle, .done: return nil
        case .registering: return min(nextRegistration, started + connectWindow)
        case .stopping, .resetting: return stopDeadline
        case .starting, .ready, .stepping, .awaiting: return min(lastBeat + heartbeatInterval, lastHeard + heartbeatTimeout)
        }
    }

    public mutating func event(_ event: Event) -> [Action] {
        var actions: [Action]
        let now: Double
        switch event {
        case let .start(t):
            now = t
            guard phase == .idle else { return [] }
            phase = .registering
            started = now
            nextRegistration = now
            actions = []
        case let .message(m, t):
            now = t
            actions = received(m, now: now)
        case let .registrationSent(delivered, t):
            now = t
            if delivered { backoff = min(backoff * 2, 1) }
            actions = []
        case let .device(report, t):
            now = t
            actions = deviceReported(report, now: now)
        case let .stopRequested(t):
            now = t
            actions = stopRequested(now: now)
        case let .tick(t):
            now = t
            actions = []
        case let .linksBound(e, t):
            now = t
            actions = linksBound(e, now: now)
        }
        return actions + timers(now)
    }

    // MARK: events

    private mutating func received(_ m: ControlMessage, now: Double) -> [Action] {
        guard phase != .idle, phase != .done else { return [] }
        lastHeard = now
        switch (phase, m.kind) {
        case (.registering, .refused):
            return exit(.refused("the coordinator refused this worker: \(m.reason ?? "no reason given")"))
        case (.registering, .shutdown):
            return exit(.failed("the coordinator shut the job down before it started: \(m.reason ?? "")"))
        case (.registering, .assign):
            guard let ranks = m.ranks, let worldSize = m.worldSize, let config = m.config, let successors = m.successors,
                  ranks.count == settings.devices, successors.count == ranks.count else {
                return exit(.failed("malformed assignment from the coordinator"))
            }
            if let keys = m.ringKeys, keys.count != worldSize { return exit(.failed("malformed assignment from the coordinator (ring keys)")) }
            if let p = m.predecessors, p.count != ranks.count { return exit(.failed("malformed assignment from the coordinator (predecessors)")) }
            if let d = m.memoryDomains, d.count != worldSize { return exit(.failed("malformed assignment from the coordinator (memory domains)")) }
            let a = Assignment(ranks: ranks, worldSize: worldSize, jobID: m.jobID ?? 0, epoch: m.epoch ?? 1, config: config,
                               successors: successors, resumeFrom: m.resumeFrom, restore: m.restore,
                               partitionPlan: m.partitionPlan, forensicsDirectory: m.forensicsDirectory, dataFiles: m.dataFiles ?? [],
                               ringKeys: m.ringKeys, predecessors: m.predecessors, memoryDomains: m.memoryDomains)
            assignment = a
            phase = .starting
            lastBeat = now
            return [.log("worker pid \(settings.pid): ranks \(ranks.map(String.init).joined(separator: ",")) of \(worldSize)"),
                    .startDevices(a)]
        case (.registering, _):
            return []
        case (.stopping, _), (.resetting, _):
            return []
        case (_, .reset):
            return reset("the coordinator started membership \(m.epoch.map(String.init) ?? "?"): \(m.reason ?? "")", now: now)
        case (_, .shutdown):
            outcome = .finished
            return stopDevices(now: now)
        case (.ready, .step):
            currentStep = m.step ?? 0
            checksumRequested = m.checksum ?? false
            stepReports = [:]
            phase = .stepping
            return [.order(.step(currentStep, checksum: checksumRequested, replicate: m.replicate ?? false))]
        case (.ready, .checkpoint), (.stepping, .checkpoint):
            guard let directory = m.directory else { return [] }
            return [.order(.checkpoint(directory: directory))]
        default:
            return []
        }
    }

    private mutating func deviceReported(_ report: DeviceReport, now: Double) -> [Action] {
        switch report {
        case let .stopped(device):
            stoppedDevices.insert(device)
            guard stoppedDevices.count == settings.devices else { return [] }
            if phase == .stopping { return leave() }
            if phase == .resetting { return [.rebindLinks] }
            return []
        case let .failed(_, failure):
            guard phase != .stopping, phase != .done, phase != .resetting, phase != .awaiting else { return [] }
            var f = ControlMessage(.failed)
            f.reason = failure.description
            f.epoch = assignment?.epoch
            if (failure.error as? TrainingError)?.code == .nonFiniteStreak { f.nonFinite = true }
            if recovers {
                // The coordinator decides: a reset (recovery) or a shutdown.
                phase = .awaiting
                return [.send(f), .stopDevices, .log("device failed: \(failure.description); waiting for the coordinator")]
            }
            return [.send(f), .stopDevices] + exit(.failed(failure.description, cause: failure))
        case let .ready(device):
            guard phase == .starting else { return [] }
            readyDevices.insert(device)
            guard readyDevices.count == settings.devices else { return [] }
            phase = .ready
            var r = ControlMessage(.ready)
            r.epoch = assignment?.epoch
            return [.send(r)]
        case let .stepDone(device, r):
            guard phase == .stepping else { return [] }
            stepReports[device] = r
            guard stepReports.count == settings.devices else { return [] }
            phase = .ready
            let reports = (0..<settings.devices).compactMap { stepReports[$0] }
            var done = ControlMessage(.stepDone)
            done.step = currentStep
            done.epoch = assignment?.epoch
            done.metrics = reports[0].metrics
            // The time split of the slowest device, so that its parts add up to its step.
            let slowest = reports.max { $0.computeSeconds + $0.exposedCommunicationSeconds < $1.computeSeconds + $1.exposedCommunicationSeconds }
            done.computeSeconds = slowest?.computeSeconds
            done.exposedCommunicationSeconds = slowest?.exposedCommunicationSeconds
            if checksumRequested { done.checksums = reports.map(\.checksums) }
            done.bytesSent = reports.map(\.bytesSent)
            done.checkpointSeconds = reports.map(\.checkpointSeconds).max()
            done.replicaSeconds = reports.map(\.replicaSeconds).max()
            done.memory = reports.map(\.memory)
            // The devices' shares of the evaluation, summed in rank order.
            done.validation = reports.compactMap(\.validation).reduce(nil) { ($0 ?? LanguageModelTotals()) + $1 }
            done.rankSeconds = reports.map {
                ControlMessage.RankSeconds(compute: max(0, $0.computeSeconds - $0.dataSeconds), exposedCommunication: $0.exposedCommunicationSeconds,
                                           checkpoint: $0.checkpointSeconds, data: $0.dataSeconds)
            }
            return [.send(done)]
        case let .checkpointWritten(device, record):
            guard [.ready, .stepping].contains(phase), !checkpointsFailed.contains(record.step) else { return [] }
            shardsWritten[record.step, default: [:]][device] = record
            guard let all = shardsWritten[record.step], all.count == settings.devices else { return [] }
            shardsWritten[record.step] = nil
            var c = ControlMessage(.checkpointDone)
            c.step = record.step
            c.epoch = assignment?.epoch
            c.shards = (0..<settings.devices).compactMap { all[$0] }
            return [.send(c)]
        case let .checkpointFailed(_, step, failure):
            guard [.ready, .stepping].contains(phase) else { return [] }
            // One report per checkpoint: the worker's other shards of it no longer matter.
            guard checkpointsFailed.insert(step).inserted else { return [] }
            shardsWritten[step] = nil
            var c = ControlMessage(.checkpointFailed)
            c.step = step
            c.epoch = assignment?.epoch
            c.reason = failure.description
            return [.send(c), .log("warning: checkpoint of step \(step) not written: \(failure.description)")]
        }
    }

    private mutating func stopRequested(now: Double) -> [Action] {
        switch phase {
        case .idle, .registering:
            return exit(.stopped)
        case .starting, .ready, .stepping, .awaiting, .resetting:
            var f = ControlMessage(.failed)
            f.reason = "worker pid \(settings.pid) on \(settings.host) was stopped by a signal"
            outcome = .stopped
            return [.send(f)] + stopDevices(now: now)
        case .stopping, .done:
            return []
        }
    }

    // MARK: timers

    private mutating func timers(_ now: Double) -> [Action] {
        switch phase {
        case .registering:
            if now >= started + connectWindow {
                return exit(.failed("no coordinator answered at \(settings.coordinator) within \(Int(connectWindow)) s"
                                    + (settings.authenticated ? " (no CURVE handshake completed: check that security.coordinator_public_key is the coordinator's, and that this worker's public key is on its allowed_workers list)" : "")))
            }
            guard now >= nextRegistration else { return [] }
            nextRegistration = now + backoff
            return [.register(registration)]
        case .starting, .ready, .stepping, .awaiting:
            if now >= lastHeard + heartbeatTimeout {
                let why = "lost the coordinator at \(settings.coordinator): no message for \(Int(heartbeatTimeout)) s"
                // With fault tolerance, wait for it to come back (a restarted coordinator re-admits the workers).
                if recovers { return reset(why + "; registering again", now: now) }
                return [.stopDevices] + exit(.failed(why))
            }
            guard now >= lastBeat + heartbeatInterval else { return [] }
            lastBeat = now
            return [.send(ControlMessage(.heartbeat))]
        case .stopping:
            return now >= stopDeadline ? leave() : []
        case .resetting:
            guard now >= stopDeadline else { return [] }
            stopDeadline = .infinity
            return [.log("not every device stopped within \(settings.deviceStopGraceSeconds) s; binding new links anyway"), .rebindLinks]
        case .idle, .done:
            return []
        }
    }

    // MARK: new memberships

    /// Stops the devices for a new membership; the links are rebound once they have stopped.
    private mutating func reset(_ why: String, now: Double) -> [Action] {
        phase = .resetting
        stopDeadline = now + settings.deviceStopGraceSeconds
        var actions: [Action] = [.log(why)]
        // No devices were built (not assigned yet), or they have all stopped: rebind at once.
        if assignment == nil || stoppedDevices.count == settings.devices {
            actions.append(.rebindLinks)
        } else {
            actions.append(.stopDevices)
        }
        return actions
    }

    private mutating func linksBound(_ e: [String], now: Double) -> [Action] {
        guard phase == .resetting else { return [] }
        endpoints = e
        connectWindow = max(settings.connectTimeoutSeconds, assignment?.config.faultTolerance.rejoinTimeoutSeconds ?? 0)
        assignment = nil
        readyDevices = []
        stoppedDevices = []
        stepReports = [:]
        shardsWritten = [:]
        checkpointsFailed = []
        phase = .registering
        started = now
        backoff = 0.05
        nextRegistration = now
        return []
    }

    private var registration: ControlMessage {
        var r = ControlMessage(.register)
        r.protocolVersion = settings.protocolVersion
        r.build = settings.build
        r.configHash = settings.configHash
        r.expectedWorldSize = settings.expectedWorldSize
        r.launchRank = settings.launchRank
        r.devices = settings.devices
        r.endpoints = endpoints
        r.host = settings.host
        r.pid = settings.pid
        r.jobToken = settings.jobToken
        r.encryptsRing = settings.encryptsRing
        return r
    }

    // MARK: leaving

    /// Orders the devices to stop; the worker leaves when all have stopped or the grace passed.
    private mutating func stopDevices(now: Double) -> [Action] {
        phase = .stopping
        stopDeadline = now + settings.deviceStopGraceSeconds
        if stoppedDevices.count == settings.devices { return leave() }
        return [.stopDevices]
    }

    /// After a shutdown the coordinator waits for `bye`; after a signal it was told `failed`.
    private mutating func leave() -> [Action] {
        let bye: [Action] = outcome == .finished ? [.send(ControlMessage(.bye))] : []
        return bye + exit(outcome)
    }

    private mutating func exit(_ o: Outcome) -> [Action] {
        phase = .done
        return [.exit(o)]
    }
}
