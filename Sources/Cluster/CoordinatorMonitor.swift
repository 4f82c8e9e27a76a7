import Common
import Foundation
import Model
import Telemetry
import Training
import Zero

/// Everything the coordinator tells the outside world about the job besides its log: the
/// TensorBoard event file and metrics.jsonl's scalars, the Prometheus metrics, the `/status`
/// snapshot (served by `CoordinatorHTTPServer`), and systemd's notify socket. The loop calls it
/// after carrying out actions; it never blocks on a client.
final class CoordinatorMonitor {
    typealias Options = Coordinator.Monitoring

    let config: TrainConfig
    let options: Options
    let metrics = JobMetrics(version: ControlMessage.build)
    let status: Monitor<JobStatus>
    let notifier: SystemdNotifier
    private let events: EventFileWriter
    private var server: CoordinatorHTTPServer?
    /// Unix time of the loop's clock origin (its `now` is seconds since then).
    private let originUnix: Double
    private let output: @Sendable (String) -> Void
    /// Per rank, the last memory snapshot reported (for /status's workers).
    private var memoryByRank: [Int: MemoryLedger.Snapshot] = [:]
    private var recoveriesSeen = 0
    private var health = HealthMonitor()
    /// Where the HTTP server listens once started.
    private(set) var httpEndpoint: CoordinatorHTTPServer.Endpoint?

    init(config: TrainConfig, runDirectory: URL, options: Options, originUnix: Double, notifier: SystemdNotifier,
         output: @escaping @Sendable (String) -> Void) throws {
        self.config = config
        self.options = options
        self.originUnix = originUnix
        self.notifier = notifier
        self.output = output
        status = Monitor(JobStatus(state: "admitting", step: 0, totalSteps: config.training.totalSteps,
                                   runDirectory: runDirectory.path, startedAt: originUnix))
        events = try EventFileWriter(directory: runDirectory, suffix: "coordinator")
        if let http = options.http { server = try CoordinatorHTTPServer(endpoint: http, metrics: metrics, status: status) }
    }

    /// Starts the HTTP server (if any); returns its bound endpoint.
    func startHTTP(runDirectory: URL) throws {
        guard let server else { return }
        let bound = try server.start()
        httpEndpoint = bound
        try? Data("http://\(bound)\n".utf8).write(to: runDirectory.appendingPathComponent("coordinator.http"), options: .atomic)
        output("serving http://\(bound)/ (/metrics, /status)")
    }

    /// The job ended: the final state on /status; STOPPING=1.
    func finish(code: Int32, message: String) {
        let state = code == 0 ? "finished" : code == 130 ? "stopped" : "failed"
        status.withLock { $0.state = state }
        notifier.notify("STOPPING=1", "STATUS=\(state): \(message)")
    }

    func stopHTTP() { server?.stop() }

    /// One finished step: TensorBoard, Prometheus, the live page; returns the scalars for metrics.jsonl.
    func record(_ m: StepMetrics, worldSize: Int, membershipConfig: TrainConfig, idleSeconds: Double, bytesSent: [[String: Int]],
                memory: [MemoryLedger.Snapshot], rankSeconds: [ControlMessage.RankSeconds]) throws -> [String: Double] {
        var ranks: [StepSample.Rank] = []
        for r in 0..<worldSize {
            let t = r < rankSeconds.count ? rankSeconds[r] : ControlMessage.RankSeconds(compute: 0, exposedCommunication: 0, checkpoint: 0)
            let snap = r < memory.count ? memory[r] : nil
            if let snap { memoryByRank[r] = snap }
            var current: [String: Int] = [:], peak: [String: Int] = [:]
            if let snap {
                current["device"] = snap.current.values.reduce(0, +)
                peak["device"] = snap.peakTotal
                for tier in ["host", "disk"] {
                    current[tier] = snap.offloaded[tier]?.values.reduce(0, +) ?? 0
                    peak[tier] = snap.offloadedPeak[tier] ?? 0
                }
            }
            ranks.append(StepSample.Rank(rank: r, computeSeconds: t.compute, exposedCommunicationSeconds: t.exposedCommunication,
                                         checkpointSeconds: t.checkpoint, dataSeconds: t.data,
                                         utilization: m.seconds > 0 ? min(1, t.compute / m.seconds) : 0,
                                         memoryBytes: current, memoryPeakBytes: peak,
                                         sentBytes: r < bytesSent.count ? bytesSent[r].values.reduce(0, +) : 0))
        }
        var mfu: Double?
        if let peak = options.peakGflopsPerRank, peak > 0, m.seconds > 0 {
            let t = membershipConfig.training
            let flops = ModelFLOPs.trainingStep(config: membershipConfig.model, batch: t.microBatchSize, seqLen: membershipConfig.data.seqLen)
                * Double(t.gradientAccumulationSteps * worldSize)
            mfu = flops / m.seconds / (peak * 1e9 * Double(worldSize))
        }
        var sample = StepSample(step: m.step, loss: Double(m.loss), learningRate: m.lr, gradNorm: m.gradNorm,
                                auxLoss: config.model.isMoE ? Double(m.auxLoss) : nil, tokens: m.tokens, seconds: m.seconds,
                                tokensPerSecond: m.tokensPerSecond, mfu: mfu, skipped: m.skipped, idleSeconds: idleSeconds, ranks: ranks)
        sample.expertLoad = m.expertLoad ?? []
        sample.lossScale = m.lossScale.map(Double.init)
        sample.layerGradNorms = m.layerGradNorms ?? []
        if let v = m.validation { sample.validation = .init(loss: v.loss, perplexity: v.perplexity, accuracy: v.accuracy) }
        let scalars = sample.scalars
        try events.scalars(step: m.step, scalars)
        metrics.record(sample)
        status.withLock {
            $0.append(.init(step: m.step, loss: m.loss.isFinite ? Double(m.loss) : nil, tokensPerSecond: m.tokensPerSecond,
                            memoryBytes: ranks.reduce(0) { $0 + ($1.memoryBytes["device"] ?? 0) }))
        }
        var warnings = health.observe(step: m.step, loss: Double(m.loss), gradNorm: m.gradNorm, skipped: m.skipped,
                                      layerNorms: sample.namedLayerGradNorms)
        if let v = m.validation { warnings += health.observeValidation(step: m.step, loss: v.loss) }
        for w in warnings {
            metrics.healthWarning(w.rule)
            status.withLock { $0.warn(.init(time: Date().timeIntervalSince1970, message: w.message)) }
            output("warning: " + w.message)
        }
        notifier.notify("STATUS=step \(m.step + 1)/\(config.training.totalSteps) loss \(String(format: "%.4f", m.loss)) tok/s \(Int(m.tokensPerSecond.rounded()))")
        return Dictionary(scalars.map { ($0.tag, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    /// After every turn of the loop: the status snapshot from the state; the watchdog ping.
    func update(_ state: CoordinatorState, now: Double) {
        notifier.watchdog()
        var workers: [JobStatus.Worker] = []
        for w in state.workers where !w.gone {
            let snaps = w.ranks.compactMap { memoryByRank[$0] }
            workers.append(JobStatus.Worker(host: w.host, pid: w.pid, ranks: w.ranks, devices: w.devices,
                                            lastHeartbeatSecondsAgo: max(0, now - w.lastSeen), lastHeartbeat: originUnix + w.lastSeen,
                                            memoryBytes: snaps.reduce(0) { $0 + $1.current.values.reduce(0, +) },
                                            memoryPeakBytes: snaps.reduce(0) { $0 + $1.peakTotal }))
        }
        let events = state.recoveryEvents
        if events.count > recoveriesSeen {
            for _ in recoveriesSeen..<events.count { metrics.recovered() }
            recoveriesSeen = events.count
        }
        metrics.membership(workers: workers.count, worldSize: state.worldSize)
        status.withLock { s in
            if !["finished", "failed", "stopped"].contains(s.state) { s.state = Self.name(state.phase) }
            s.step = state.step
            s.worldSize = state.worldSize
            s.membership = state.epoch
            s.workers = workers
            s.lastCheckpoint = state.lastCheckpoint.map { .init(step: $0.step, path: $0.path) }
            s.recoveries = events.map { .init(time: originUnix + $0.time, message: "membership \($0.epoch): \($0.reason)") }
        }
    }

    static func name(_ phase: CoordinatorState.Phase) -> String {
        switch phase {
        case .admitting: "admitting"
        case .starting: "starting"
        case .running: "running"
        case .checkpointing: "checkpointing"
        case .recovering: "recovering"
        case .stopping: "stopping"
        case .finished: "finished"
        }
    }
}
