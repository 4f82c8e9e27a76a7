import Comm
import CommZMQ
import Foundation
import Model
import Tensor
import Training
import Zero

/// `zerotrain worker`: hosts `devices` ranks. Registers with the coordinator (retrying until it
/// answers or `connectTimeout` passes), builds one model per device on a thread of its own, joins
/// the ring, and runs the steps the coordinator orders; heartbeats both ways.
public final class Worker {
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
        public var protocolVersion = ControlMessage.protocolVersion
        /// Testing hook: perturb one parameter of the last device after this step.
        public var injectDivergenceAtStep: Int?
        public init(coordinator: String) { self.coordinator = coordinator }
    }

    public let options: Options
    public var output: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }

    public init(options: Options) { self.options = options }

    /// Runs until the coordinator shuts the job down. Returns normally on a clean shutdown.
    public func run() throws {
        let context = try ZMQContext(ioThreads: 1)
        let dealer = try ControlDealer(context: context, connect: options.coordinator)
        defer { dealer.close() }
        // Data endpoints: the first device's predecessor is on another worker (tcp); the others'
        // are devices of this worker (inproc, same context).
        var transports: [ZMQTransport] = []
        var endpoints: [String] = []
        for d in 0..<options.devices {
            let endpoint = d == 0 ? "tcp://\(options.advertiseHost):*" : "inproc://zerotrain-\(getpid())-\(d)"
            let t = try ZMQTransport(context: context, rank: d, worldSize: max(2, options.devices), bind: endpoint)
            transports.append(t)
            endpoints.append(t.boundEndpoint)
        }
        var register = ControlMessage(.register)
        register.protocolVersion = options.protocolVersion
        register.build = ControlMessage.build
        register.configHash = options.configHash
        register.expectedWorldSize = options.expectedWorldSize
        register.devices = options.devices
        register.endpoints = endpoints
        register.host = ProcessInfo.processInfo.hostName
        register.pid = Int(getpid())

        // 1. Register, retrying with backoff until the coordinator answers.
        let clock = ContinuousClock()
        let start = clock.now
        var backoff = 0.05
        var lastSend = clock.now - .seconds(10)
        var assign: ControlMessage?
        while assign == nil {
            if (clock.now - start).seconds > options.connectTimeoutSeconds {
                throw ClusterError(.runtime, "no coordinator answered at \(options.coordinator) within \(Int(options.connectTimeoutSeconds)) s")
            }
            if (clock.now - lastSend).seconds >= backoff {
                if try dealer.send(register.encoded()) { lastSend = clock.now; backoff = min(backoff * 2, 1) } else { lastSend = clock.now }
            }
            guard let data = try dealer.receive(timeoutMs: 50), let m = ControlMessage.decode(data) else { continue }
            switch m.kind {
            case .refused: throw ClusterError(.badInput, "the coordinator refused this worker: \(m.reason ?? "no reason given")")
            case .assign: assign = m
            case .shutdown: throw ClusterError(.runtime, "the coordinator shut the job down before it started: \(m.reason ?? "")")
            default: continue
            }
        }
        guard let a = assign, let ranks = a.ranks, let worldSize = a.worldSize, let config = a.config,
              let successors = a.successors, ranks.count == options.devices, successors.count == ranks.count else {
            throw ClusterError(.runtime, "malformed assignment from the coordinator")
        }
        output("worker pid \(getpid()): ranks \(ranks.map(String.init).joined(separator: ",")) of \(worldSize)")

        // 2. Build the devices; each joins the ring from its own threads.
        let heartbeatInterval = Double(config.cluster.heartbeatIntervalMs) / 1000
        let heartbeatTimeout = Double(config.cluster.heartbeatTimeoutMs) / 1000
        let threads = options.threads ?? config.training.threads
        // Several devices call BLAS concurrently: each call must stay on its caller's thread.
        GEMM.setThreads(options.devices > 1 ? 1 : threads)
        var devices: [Device] = []
        for (d, rank) in ranks.enumerated() {
            let setup = Device.Setup(rank: rank, worldSize: worldSize, jobID: a.jobID ?? 0, epoch: a.epoch ?? 1,
                                     config: config, transport: TransportBox(transports[d]), successor: successors[d],
                                     threads: threads, numaNode: (options.numaNode ?? 0) + d,
                                     resumeFrom: a.resumeFrom, partitionPlan: a.partitionPlan)
            devices.append(Device(setup: setup))
        }
        transports.removeAll()
        defer { for d in devices { d.stop() } }
        var lastHeard = clock.now
        var lastBeat = clock.now
        func pump(until condition: () -> Bool) throws {
            while !condition() {
                if let data = try dealer.receive(timeoutMs: 10), let m = ControlMessage.decode(data) {
                    lastHeard = clock.now
                    if m.kind == .shutdown { throw ShutdownRequested(reason: m.reason ?? "") }
                }
                try keepAlive()
            }
        }
        func keepAlive() throws {
            if (clock.now - lastBeat).seconds >= heartbeatInterval {
                _ = try dealer.send(ControlMessage(.heartbeat).encoded())
                lastBeat = clock.now
            }
            if (clock.now - lastHeard).seconds > heartbeatTimeout {
                throw ClusterError(.runtime, "lost the coordinator at \(options.coordinator): no message for \(Int(heartbeatTimeout)) s")
            }
            if let failed = devices.first(where: { $0.failure != nil }) {
                var f = ControlMessage(.failed)
                f.reason = "rank \(failed.setup.rank): \(failed.failure!)"
                _ = try dealer.send(f.encoded())
                throw ClusterError(.runtime, f.reason!)
            }
        }
        do {
            try pump { devices.allSatisfy(\.isReady) }
            _ = try dealer.send(ControlMessage(.ready).encoded())
            // 3. Serve the coordinator's orders.
            while true {
                guard let data = try dealer.receive(timeoutMs: 10) else { try keepAlive(); continue }
                lastHeard = clock.now
                guard let m = ControlMessage.decode(data) else { continue }
                switch m.kind {
                case .step:
                    let step = m.step ?? 0
                    for d in devices { d.order(.step(step, checksum: m.checksum ?? false)) }
                    try pump { devices.allSatisfy { $0.completedStep == step } }
                    if let at = options.injectDivergenceAtStep, at == step { devices.last!.order(.perturb) ; try pump { devices.last!.idle } }
                    var done = ControlMessage(.stepDone)
                    done.step = step
                    done.metrics = devices[0].lastMetrics
                    done.computeSeconds = devices.map(\.lastComputeSeconds).max()
                    done.exposedCommunicationSeconds = devices.map(\.lastExposedSeconds).max()
                    if m.checksum == true { done.checksums = devices.map(\.lastChecksums) }
                    done.bytesSent = devices.map(\.lastBytesSent)
                    done.memory = devices.compactMap(\.memorySnapshot)
                    _ = try dealer.send(done.encoded())
                case .checkpoint:
                    guard let dir = m.directory else { continue }
                    for d in devices { d.order(.checkpoint(URL(fileURLWithPath: dir))) }
                    try pump { devices.allSatisfy(\.idle) }
                    var c = ControlMessage(.checkpointDone)
                    c.step = m.step
                    c.path = devices.first { $0.setup.rank == 0 }?.lastCheckpoint
                    _ = try dealer.send(c.encoded())
                case .shutdown:
                    throw ShutdownRequested(reason: m.reason ?? "")
                default:
                    continue
                }
            }
        } catch is ShutdownRequested {
            for d in devices { d.stop() }
            _ = try? dealer.send(ControlMessage(.bye).encoded())
            usleep(50_000)   // let the bye leave before the socket closes
        }
    }

    struct ShutdownRequested: Error { let reason: String }
}

/// Moves a ZeroMQ transport from the thread that bound it to the device's communication thread
/// (libzmq allows a socket to change threads across a full memory barrier; thread start is one).
final class TransportBox: @unchecked Sendable {
    var transport: ZMQTransport?
    init(_ t: ZMQTransport) { transport = t }
}
