import Comm
import Common
import Foundation
import Telemetry
import Tensor
import Training
import Zero

/// `zerotrain worker`: hosts `devices` ranks. The protocol is `WorkerState`'s; this class carries
/// its actions out: it binds one ring link per device, registers with the coordinator, builds
/// one `Device` per rank when assigned, and waits for the next event — a control message, a
/// device's report (which wakes the loop), a stop request, or the state's next deadline
/// (heartbeat, connect timeout). It never polls.
public final class Worker: Sendable {
    public struct Options: Sendable {
        public var coordinator: String
        public var devices = 1
        /// Compute threads per device; nil = training.threads of the job.
        public var threads: Int?
        /// NUMA node of device 0 (devices go round-robin from it); nil = round-robin from 0.
        public var numaNode: Int?
        /// Address other workers reach this one at (tcp data endpoints).
        public var advertiseHost = "127.0.0.1"
        public var connectTimeoutSeconds = 60.0
        /// When set, the coordinator refuses this worker unless its config matches.
        public var configHash: String?
        public var expectedWorldSize: Int?
        /// The launcher's index of this worker (torchrun RANK, SLURM_PROCID): ranks follow it.
        public var launchRank: Int?
        public var protocolVersion = ControlMessage.protocolVersion
        /// `security.job_token`, sent with the registration.
        public var jobToken: String?
        /// The control plane is CURVE-authenticated (for the hint when no coordinator answers).
        public var authenticated = false
        /// With keys: whether this worker's ring links are encrypted (the coordinator refuses a mismatch).
        public var encryptsRing: Bool?
        /// Called on a device's thread after each of its steps, before the step is reported
        /// (instrumentation and tests).
        public var afterStep: StepHook?
        /// Fault injection (the chaos test): pauses that widen a failure window.
        public var faultDelays = FaultDelays()
        /// Where the worker caches what it fetched from the coordinator (the token file, when it
        /// cannot see the coordinator's); nil = the current directory.
        public var runDirectory: URL?
        /// systemd's notify socket (`$NOTIFY_SOCKET`; a no-op outside systemd): READY=1 once
        /// admitted, STATUS= after every step, WATCHDOG=1 from the step loop, STOPPING=1.
        public var notifier = SystemdNotifier()
        public init(coordinator: String) { self.coordinator = coordinator }
    }

    public typealias StepHook = @Sendable (Trainer) throws -> Void

    /// Pauses that widen two windows a fault-injection test aims its kills at, in milliseconds:
    /// after a shard file is written (before it is reported), and on the communication thread
    /// before each replica exchange. Zero in normal runs.
    public struct FaultDelays: Sendable {
        public var afterShardWriteMs = 0.0
        public var beforeReplicaExchangeMs = 0.0
        public init() {}
    }

    public let options: Options
    public let network: any ClusterNetwork
    private let output: @Sendable (String) -> Void
    private let mailbox = Mailbox<(generation: Int, report: DeviceReport)>()
    /// Shards kept in this worker's memory across memberships (fault_tolerance.replica_interval).
    private let replicas = ReplicaStore()

    public init(options: Options, network: any ClusterNetwork,
                output: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.options = options
        self.network = network
        self.output = output
    }

    /// Asks the worker to leave the job (SIGTERM): it tells the coordinator and stops its devices.
    /// Safe from any thread.
    public func requestStop() { mailbox.requestStop() }

    /// Runs until the job ends for this worker; returns the exit code (0 after a clean shutdown,
    /// 130 when stopped by `requestStop`). Throws `ClusterError`: refused (bad input) or a
    /// runtime failure (lost coordinator, failed device).
    public func run() throws -> Int32 {
        let client = try network.connect(coordinator: options.coordinator)
        var links = try (0..<options.devices).map {
            try network.bindRingLink(device: $0, devices: options.devices, advertiseHost: options.advertiseHost)
        }
        if let first = links.first { output("ring link bound at \(first.boundEndpoint)" + (network.encryptsRing ? " (CURVE)" : "")) }
        let orphans = SharedMemory.removeOrphans()
        if !orphans.isEmpty { output("removed \(orphans.count) shared-memory replica slot(s) of processes that no longer exist") }
        var settings = WorkerState.Settings(coordinator: options.coordinator, devices: options.devices,
                                            endpoints: links.map(\.boundEndpoint), host: ProcessInfo.processInfo.hostName,
                                            pid: Int(getpid()))
        settings.protocolVersion = options.protocolVersion
        settings.configHash = options.configHash
        settings.expectedWorldSize = options.expectedWorldSize
        settings.launchRank = options.launchRank
        settings.connectTimeoutSeconds = options.connectTimeoutSeconds
        settings.jobToken = options.jobToken
        settings.authenticated = options.authenticated
        settings.encryptsRing = options.encryptsRing
        var state = WorkerState(settings: settings)
        var devices: [Device] = []
        /// Devices of each assignment are one generation; reports of an older one are dropped.
        var generation = 0
        let wakeup = client.wakeup
        let clock = ContinuousClock(), origin = clock.now
        func now() -> Double { (clock.now - origin).seconds }

        let notifier = options.notifier
        var announcedReady = false

        /// A data fetch under way: the current file's state and cache file, the assignment waiting
        /// for it, the files still to fetch, and the folder that holds them (token shards; nil for
        /// the single token file).
        var fetch: (state: TokenFetch, assignment: WorkerState.Assignment, cache: URL, remaining: [String], folder: URL?)?

        /// Starts fetching `path` into `cache` (resuming a partial cache file).
        func startFetch(_ path: String, cache: URL, assignment: WorkerState.Assignment, remaining: [String], folder: URL?) throws -> [WorkerState.Action] {
            let cached = (try? FileManager.default.attributesOfItem(atPath: cache.path)[.size] as? Int) ?? 0
            var f = TokenFetch(path: path, cachedBytes: cached)
            output("fetching \(path) from the coordinator into \(cache.path)" + (cached > 0 ? " (resuming after \(cached) bytes)" : ""))
            let first = f.start()
            fetch = (f, assignment, cache, remaining, folder)
            return try fetched(first)
        }

        /// Carries out a fetch's actions; the worker actions that follow (none, or the failure).
        func fetched(_ actions: [TokenFetch.Action]) throws -> [WorkerState.Action] {
            for action in actions {
                guard let f = fetch else { return [] }
                switch action {
                case let .request(m):
                    _ = try client.send(m.encoded())
                case let .append(offset, data):
                    do {
                        try FileManager.default.createDirectory(at: f.cache.deletingLastPathComponent(), withIntermediateDirectories: true)
                        if !FileManager.default.fileExists(atPath: f.cache.path) { _ = FileManager.default.createFile(atPath: f.cache.path, contents: nil) }
                        let handle = try FileHandle(forWritingTo: f.cache)
                        defer { try? handle.close() }
                        try handle.truncate(atOffset: UInt64(offset))
                        try handle.write(contentsOf: data)
                    } catch {
                        throw ClusterError(.runtime, "cannot write the token cache \(f.cache.path)", cause: error)
                    }
                case .complete:
                    output("fetched \(f.state.path): \(f.state.cached) bytes, every chunk's CRC-32C checked")
                    if let next = f.remaining.first, let folder = f.folder {
                        return try startFetch(next, cache: folder.appendingPathComponent(URL(fileURLWithPath: next).lastPathComponent),
                                              assignment: f.assignment, remaining: Array(f.remaining.dropFirst()), folder: folder)
                    }
                    var a = f.assignment
                    a.config.data.path = (f.folder ?? f.cache).path
                    // The shards' validation split was fetched into the same folder.
                    if f.folder != nil && a.config.data.validationPath != nil { a.config.data.validationPath = f.folder!.path }
                    fetch = nil
                    devices = startDevices(a, links: &links, generation: generation)
                case let .fail(reason):
                    fetch = nil
                    throw ClusterError(.runtime, "cannot fetch the job's data: \(reason)")
                }
            }
            return []
        }

        /// Carries out actions (and the ones a registration's outcome leads to); the exit code once the state says exit.
        func perform(_ actions: [WorkerState.Action]) throws -> Int32? {
            var queue = actions
            while !queue.isEmpty {
                switch queue.removeFirst() {
                case let .send(m):
                    _ = try client.send(m.encoded())
                case let .register(m):
                    // The registration tells what this worker holds in memory, for a recovery.
                    var m = m
                    m.replicas = replicas.catalogue
                    m.memoryDomain = SharedMemory.domain
                    let delivered = try client.send(m.encoded())
                    if delivered && !announcedReady {
                        announcedReady = true
                        notifier.notify("READY=1", "STATUS=registered with \(options.coordinator)")
                    }
                    queue += state.event(.registrationSent(delivered: delivered, now: now()))
                case let .startDevices(a):
                    notifier.notify("STATUS=admitted: ranks \(a.ranks.map(String.init).joined(separator: ",")) of \(a.worldSize)")
                    generation += 1
                    fetch = nil
                    if let path = a.config.data.path, a.config.data.source == "tokens", !FileManager.default.isReadableFile(atPath: path) {
                        // Not on this host: fetched from the coordinator first, then the devices start.
                        queue += try startFetch(path, cache: tokenCache(for: path), assignment: a, remaining: [], folder: nil)
                    } else if let path = a.config.data.path, a.config.data.source == "shards", !FileManager.default.isReadableFile(atPath: path),
                              let first = a.dataFiles.first {
                        // Token shards this host cannot see: each file fetched into a folder the devices then map.
                        let folder = tokenCache(for: path)
                        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                        queue += try startFetch(first, cache: folder.appendingPathComponent(URL(fileURLWithPath: first).lastPathComponent),
                                                assignment: a, remaining: Array(a.dataFiles.dropFirst()), folder: folder)
                    } else {
                        devices = startDevices(a, links: &links, generation: generation)
                    }
                case .rebindLinks:
                    // The old devices own (and closed) their links; unused ones are reused.
                    let missing = options.devices - links.count
                    if missing > 0 {
                        links += try (0..<missing).map {
                            try network.bindRingLink(device: links.count + $0, devices: options.devices, advertiseHost: options.advertiseHost)
                        }
                    }
                    devices = []
                    // Nobody may connect to the new links until the next assignment names the predecessors.
                    network.admitRingPredecessors(nil)
                    queue += state.event(.linksBound(links.map(\.boundEndpoint), now: now()))
                case let .order(o):
                    for d in devices { d.order(Self.deviceOrder(o)) }
                case .stopDevices:
                    for d in devices { d.order(.stop) }
                    if fetch != nil {
                        // Still fetching: there are no devices to stop, so none will report; say they stopped.
                        fetch = nil
                        for d in 0..<options.devices { mailbox.post((generation, .stopped(device: d))) }
                    }
                case let .log(line):
                    output(line)
                case let .exit(outcome):
                    notifier.notify("STOPPING=1")
                    // A last message (bye, failed) gets a moment to leave before the socket goes.
                    client.close(linger: .seconds(1))
                    switch outcome {
                    case .finished: return 0
                    case .stopped: return 130
                    case let .refused(reason): throw ClusterError(.badInput, reason)
                    case let .failed(reason, failure): throw ClusterError(.runtime, reason, cause: failure?.error)
                    }
                }
            }
            return nil
        }

        let stopEarly = mailbox.attach(wakeup)
        if let code = try perform(state.event(.start(now: now()))) { return code }
        if stopEarly, let code = try perform(state.event(.stopRequested(now: now()))) { return code }
        while true {
            var actions: [WorkerState.Action] = []
            // Under a systemd watchdog the loop also wakes every ping interval (idle between steps).
            let deadline = [state.nextDeadline.map { origin + .seconds($0) }, notifier.watchdogInterval.map { clock.now + .seconds($0) }]
                .compactMap { $0 }.min()
            switch try client.next(until: deadline) {
            case let .message(_, data):
                let decoded = ControlMessage.decodeChecked(data)
                if case let .failure(rejection) = decoded {
                    output("security: ignored a control message from the coordinator: \(rejection.reason)")
                } else if case let .success(m) = decoded, m.kind == .chunk {
                    // Answers to the fetch; still a message from the coordinator for the heartbeat timeout.
                    actions = state.event(.message(ControlMessage(.heartbeat), now: now()))
                    if var f = fetch {
                        let next = f.state.received(m)
                        fetch?.state = f.state
                        actions += try fetched(next)
                    }
                } else if case let .success(m) = decoded {
                    actions = state.event(.message(m, now: now()))
                }
            case .wakeup:
                let (reports, stop) = mailbox.take()
                for r in reports where r.generation == generation {
                    if case let .stepDone(device, step) = r.report, device == 0 {
                        let m = step.metrics
                        notifier.notify("STATUS=step \(m.step + 1) loss \(String(format: "%.4f", m.loss)) tok/s \(Int(m.tokensPerSecond.rounded()))")
                    }
                    actions += state.event(.device(r.report, now: now()))
                }
                if stop { actions += state.event(.stopRequested(now: now())) }
            case .deadline:
                actions = state.event(.tick(now: now()))
            }
            if let code = try perform(actions) { return code }
            // The watchdog is fed by the training loop: not while a step is running, so a hung
            // step (which stops the step reports) ends the pings; between steps, by every event.
            if state.phase != .stepping { notifier.watchdog() }
        }
    }

    /// The cache of the coordinator's file `path` in this worker's run directory.
    private func tokenCache(for path: String) -> URL {
        let dir = options.runDirectory ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        var h = FNV1a()
        h.add(path.utf8)
        let key = String(h.value, radix: 16)
        return dir.appendingPathComponent("fetched-\(key)-" + URL(fileURLWithPath: path).lastPathComponent)
    }

    private func startDevices(_ a: WorkerState.Assignment, links: inout [any RingLink], generation: Int) -> [Device] {
        let threads = options.threads ?? a.config.training.threads
        // Several devices call BLAS concurrently: each call must stay on its caller's thread.
        GEMM.setThreads(options.devices > 1 ? 1 : threads)
        GEMM.backend = a.config.training.gemm
        output("compute: \(GEMM.summary(backend: a.config.training.gemm, precision: a.config.training.precision.rawValue)), \(threads) thread(s) per device")
        let mailbox = self.mailbox
        let report: @Sendable (DeviceReport) -> Void = { mailbox.post((generation, $0)) }
        // Device 0's link (tcp) is the only one another process connects to: admitted from its
        // predecessor only; every device's send link pins its successor's key when that is another process.
        if let predecessors = a.predecessors, let first = a.ranks.first {
            let p = (first - 1 + a.worldSize) % a.worldSize
            network.admitRingPredecessors([RingPeer(endpoint: predecessors[0], publicKey: a.ringKeys?[p])])
        }
        var devices: [Device] = []
        for (d, rank) in a.ranks.enumerated() {
            let successorRank = (rank + 1) % a.worldSize
            let successorKey = network.encryptsRing && a.successors[d].hasPrefix("tcp://") ? a.ringKeys?[successorRank] : nil
            let setup = Device.Setup(index: d, rank: rank, worldSize: a.worldSize, jobID: a.jobID, epoch: a.epoch, config: a.config,
                                     link: LinkHandoff(links.removeFirst()), successor: a.successors[d], successorKey: successorKey, threads: threads,
                                     numaNode: (options.numaNode ?? 0) + d, resumeFrom: a.resumeFrom, restore: a.restore,
                                     replicas: replicas, faultDelays: options.faultDelays, partitionPlan: a.partitionPlan, afterStep: options.afterStep,
                                     forensicsDirectory: a.forensicsDirectory, memoryDomains: a.memoryDomains, log: output)
            devices.append(Device(setup: setup, report: report))
        }
        return devices
    }

    private static func deviceOrder(_ o: DeviceOrder) -> Device.Order {
        switch o {
        case let .step(step, checksum, replicate): .step(step, checksum: checksum, replicate: replicate)
        case let .checkpoint(directory): .checkpoint(URL(fileURLWithPath: directory))
        }
    }
}
