import Checkpoint
import Comm
import Common
import Data
import Foundation
import Model
import Telemetry
import Training
import Zero

/// `zerotrain coordinator`: owns a job. Admits workers, assigns ranks, writes the tokenised data
/// once, drives training step by step, logs metrics, writes nothing else — gradients and
/// parameters never pass through it. The protocol is `CoordinatorState`'s; this class carries its
/// actions out and waits for the next event: a control message, a stop request (which wakes the
/// loop), or the state's next deadline (heartbeats, the shutdown grace).
public final class Coordinator: Sendable {
    public let config: TrainConfig
    public let runDirectory: URL
    public let listen: String
    public let resume: String?
    /// `--stop-after-step`: pause after this update (checkpoint, exit 0); nil: run to total_steps.
    public let pauseStep: Int?
    public let network: any ClusterNetwork
    public let monitoring: Monitoring
    private let output: @Sendable (String) -> Void
    private let mailbox = Mailbox<Never>()

    /// What the coordinator publishes besides its log and metrics.jsonl (the TensorBoard event
    /// file is always written): docs/operations.md.
    public struct Monitoring: Sendable {
        /// Serve `/metrics`, `/status` and `/` here (nil: no HTTP server).
        public var http: CoordinatorHTTPServer.Endpoint?
        /// Seconds to keep answering HTTP after the job ended (the final status stays readable).
        public var httpLingerSeconds = 0.0
        /// Per-rank peak in GFLOP/s, for MFU (nil: MFU is not reported).
        public var peakGflopsPerRank: Double?
        /// systemd's notify socket (`$NOTIFY_SOCKET`; a no-op outside systemd).
        public var notifier = SystemdNotifier()
        public init() {}
    }

    public init(config: TrainConfig, listen: String, runDirectory: URL, resume: String? = nil, pauseStep: Int? = nil, network: any ClusterNetwork,
                monitoring: Monitoring = Monitoring(), output: @escaping @Sendable (String) -> Void = { print($0) }) {
        var c = config
        if c.training.checkpointDir == nil { c.training.checkpointDir = runDirectory.appendingPathComponent("checkpoints").path }
        self.config = c
        self.listen = listen
        self.runDirectory = runDirectory
        self.resume = resume
        self.pauseStep = pauseStep
        self.network = network
        self.monitoring = monitoring
        self.output = output
    }

    /// SIGINT/SIGTERM: finish the current update, checkpoint, shut the job down. Safe from any thread.
    public func requestStop() { mailbox.requestStop() }

    /// Where ranks write their flight recorders when a collective fails (`zerotrain trace`).
    public var forensicsDirectory: URL { runDirectory.appendingPathComponent("forensics") }

    /// Runs the job; returns the exit code (0 finished or paused at `pauseStep`, 1 failed, 130 stopped).
    public func run() throws -> Int32 {
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        } catch {
            throw ClusterError(.runtime, "cannot create run directory \(runDirectory.path)", cause: error)
        }
        // A teacher that cannot serve this student is the user's to fix, before any worker starts.
        if let distillation = config.training.distillation {
            try Teacher.open(distillation, student: config.model, seqLen: config.data.seqLen)
        }
        var jobConfig = config
        let dataFiles = try prepareTokens(&jobConfig)
        var startStep = 0
        var resumeFolder: String?
        if let folder = try checkpointToResume() {
            let manifest = try CheckpointReader<TrainConfig>(folder).manifest
            guard manifest.config.model == config.model else {
                throw ClusterError(.badInput, "checkpoint \(folder.path) was written for a different model config (\(manifest.config.model.numLayers) layers, hidden \(manifest.config.model.hiddenSize)); the job's has \(config.model.numLayers) layers, hidden \(config.model.hiddenSize)")
            }
            startStep = manifest.step
            resumeFolder = folder.path
        }
        let clock = ContinuousClock()
        let origin = clock.now
        let monitor = try CoordinatorMonitor(config: config, runDirectory: runDirectory, options: monitoring,
                                             originUnix: Date().timeIntervalSince1970, notifier: monitoring.notifier, output: output)
        try monitor.startHTTP(runDirectory: runDirectory)
        let server = try network.listen(listen)
        defer { server.close(linger: .zero) }
        try Data((server.endpoint + "\n").utf8).write(to: runDirectory.appendingPathComponent("coordinator.endpoint"), options: .atomic)
        output("coordinator listening on \(server.endpoint); waiting for \(config.cluster.workers) worker(s); run dir \(runDirectory.path)")
        monitor.notifier.notify("READY=1", "STATUS=waiting for \(config.cluster.workers) worker(s) on \(server.endpoint)")
        let metricsPath = config.training.metricsFile ?? runDirectory.appendingPathComponent("metrics.jsonl").path
        let metrics = try MetricsLog(path: metricsPath)
        // The keys and the token stay here: workers get the job's config without its security section.
        let jobToken = jobConfig.security?.jobToken
        let ringEncryption = jobConfig.security.flatMap { $0.secretKeyFile == nil ? nil : $0.encryptDataPlane }
        jobConfig.security = nil
        var state = CoordinatorState(config: jobConfig, configHash: config.fingerprint, jobID: UInt64.random(in: 1...UInt64.max),
                                     dataFiles: dataFiles, startStep: startStep, resumeFrom: resumeFolder,
                                     recordedSteps: resume == nil ? nil : Self.recordedSteps(metricsPath), jobToken: jobToken,
                                     ringEncryption: ringEncryption, pauseStep: pauseStep)
        let progress = ProgressLine(totalSteps: config.training.totalSteps, interactive: isatty(1) != 0, output: output)
        func now() -> Double { (clock.now - origin).seconds }
        var stopSent = false
        var stop = mailbox.attach(server.wakeup)
        // Registration attempts: 20 a second, bursts of 40 (a legitimate worker retries at most every 50 ms until delivered).
        var registrations = RateLimiter(perSecond: 20, burst: 40)
        var refusalsLoggedAt = 0.0
        while true {
            var actions: [CoordinatorState.Action] = []
            if stop && !stopSent {
                stopSent = true
                actions += state.event(.stopRequested(now: now()))
            } else {
                // Under a systemd watchdog the loop also wakes every ping interval (while waiting for workers).
                let deadline = [state.nextDeadline.map { origin + .seconds($0) },
                                monitoring.notifier.watchdogInterval.map { clock.now + .seconds($0) }].compactMap { $0 }.min()
                switch try server.next(until: deadline) {
                case let .message(peer, payload):
                    switch ControlMessage.decodeChecked(payload) {
                    case var .success(m):
                        // A registration is used only within the rate limit, and with the key the
                        // connection authenticated (never a key the message claims).
                        if m.kind == .register && !registrations.admit(now: now()) { break }
                        m.publicKey = server.authenticatedKey(of: peer)
                        actions += state.event(.message(from: peer, m, now: now()))
                    case let .failure(rejection):
                        let key = server.authenticatedKey(of: peer).map { ", key \(String($0.prefix(12)))…" } ?? ""
                        output("security: ignored a control message from peer \(peer.map { String(format: "%02x", $0) }.joined())\(key): \(rejection.reason)")
                    }
                case .wakeup:
                    stop = mailbox.take().stop
                case .deadline:
                    break
                }
            }
            if registrations.refusals > 0 && now() - refusalsLoggedAt >= 1 {
                refusalsLoggedAt = now()
                output("security: ignored \(registrations.takeRefusals()) registration attempt(s) over the rate limit (20 a second)")
            }
            actions += state.event(.tick(now: now()))
            let code = try perform(actions, state: &state, server: server, metrics: metrics, monitor: monitor, progress: progress, now: now)
            monitor.update(state, now: now())
            if let code {
                monitor.finish(code: code, message: state.exitMessage)
                // --http-linger: the final status stays readable until the period ends or a stop
                // request (SIGTERM) comes; a job that was stopped does not linger.
                if monitoring.http != nil && monitoring.httpLingerSeconds > 0 && !stop {
                    let end = clock.now + .milliseconds(Int(monitoring.httpLingerSeconds * 1000))
                    linger: while true {
                        switch try server.next(until: end) {
                        case .wakeup: if mailbox.take().stop { break linger }
                        case .message: continue
                        case .deadline: break linger
                        }
                    }
                }
                monitor.stopHTTP()
                return code
            }
        }
    }

    /// Carries out the state's actions, and those its follow-up events (a commit's outcome) lead
    /// to; the exit code once the state says exit.
    private func perform(_ initial: [CoordinatorState.Action], state: inout CoordinatorState, server: any ControlServer,
                         metrics: MetricsLog, monitor: CoordinatorMonitor, progress: ProgressLine, now: () -> Double) throws -> Int32? {
        var actions = initial
        while !actions.isEmpty {
            let batch = actions
            actions = []
            // Messages first: the next step starts before this one's metrics are written. A message
            // broadcast to every worker (step, checkpoint, shutdown) is encoded once.
            // A checkpoint's pending folder is cleared before the orders to write into it go out.
            for case let .prepareCheckpoint(step) in batch {
                let pending = CheckpointStore(directory: URL(fileURLWithPath: config.training.checkpointDir!)).pendingFolder(step: step)
                try? FileManager.default.removeItem(at: pending)
            }
            var encoded: (message: ControlMessage, data: Data)?
            for case .send(let peer, var message) in batch {
                if message.kind == .assign { message.forensicsDirectory = forensicsDirectory.path }
                if encoded?.message != message { encoded = (message, message.encoded()) }
                _ = try server.send(encoded!.data, to: peer)
            }
            for action in batch {
                switch action {
                case .send:
                    break
                case let .log(line):
                    progress.log(line)
                case let .record(m, compute, exposed, idle, checkpointSeconds, replicaSeconds, bytes, memory, rankSeconds):
                    let scalars = try monitor.record(m, worldSize: state.worldSize, membershipConfig: state.membershipConfig, idleSeconds: idle,
                                                     bytesSent: bytes, memory: memory, rankSeconds: rankSeconds)
                    try metrics.append(ClusterStepRecord(metrics: m, worldSize: state.worldSize, computeSeconds: compute,
                                                         exposedCommunicationSeconds: exposed, idleSeconds: idle,
                                                         checkpointSeconds: checkpointSeconds, replicaSeconds: replicaSeconds,
                                                         bytesSentPerRank: bytes, memoryPerRank: memory, scalars: scalars))
                    if m.step % config.training.logInterval == 0 || m.step + 1 == config.training.totalSteps || m.validation != nil {
                        progress.step(m.step, m.line(totalSteps: config.training.totalSteps) + " | ranks \(state.worldSize)")
                    }
                case .prepareCheckpoint:
                    break
                case let .abandonCheckpoint(step):
                    monitor.metrics.checkpointLost()
                    if let dir = config.training.checkpointDir {
                        try? FileManager.default.removeItem(at: CheckpointStore(directory: URL(fileURLWithPath: dir)).pendingFolder(step: step))
                    }
                case let .serveChunk(peer, request):
                    _ = try server.send(TokenFetch.serve(request, files: state.dataFiles).encoded(), to: peer)
                case let .commit(step, jobConfig, shards):
                    let outcome = commit(step: step, config: jobConfig, shards: shards, now: now())
                    if case .committed(_, _?, _, _) = outcome { monitor.metrics.checkpointCommitted(step: step) }
                    actions += state.event(outcome)
                case let .exit(code, message):
                    progress.finish()
                    if code != 0 && code != 130 { output("job failed: \(message)") }
                    return code
                }
            }
        }
        return nil
    }

    /// Writes the manifest of a checkpoint whose shards are all written, and commits it.
    private func commit(step: Int, config jobConfig: TrainConfig, shards: [ShardRecord], now: Double) -> CoordinatorState.Event {
        do {
            let store = CheckpointStore(directory: URL(fileURLWithPath: jobConfig.training.checkpointDir!))
            let extra = [try store.writeHuggingFaceConfig(jobConfig.model, step: step),
                         try store.writeTokenizer(from: jobConfig.data.tokenizerFile, step: step)]
            let manifest = try CheckpointManifest(config: jobConfig, stage: jobConfig.zero.stage, table: ParameterTable(config: jobConfig.model),
                                                  shards: shards, extraFiles: extra.compactMap { $0 })
            let folder = try store.commit(manifest, keep: jobConfig.training.checkpointKeep)
            return .committed(step: step, path: folder.path, error: nil, now: now)
        } catch {
            return .committed(step: step, path: nil, error: "\(error)", now: now)
        }
    }

    /// Steps 0..<n recorded in a metrics log (n = the highest step recorded + 1; 0 when none).
    static func recordedSteps(_ path: String) -> Int {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return 0 }
        var highest = -1
        for line in text.split(separator: "\n") {
            if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let step = o["step"] as? Int {
                highest = max(highest, step)
            }
        }
        return highest + 1
    }

    /// The checkpoint to resume from: `--resume DIR` (a step folder, or a checkpoint directory's
    /// newest), or with `--resume auto` the newest in the job's checkpoint directory if there is
    /// one (a fresh start otherwise: what a restarted coordinator does).
    private func checkpointToResume() throws -> URL? {
        guard let resume else { return nil }
        guard resume == "auto" else { return try CheckpointStore.resolve(URL(fileURLWithPath: resume)) }
        let store = CheckpointStore(directory: URL(fileURLWithPath: config.training.checkpointDir!))
        guard let folder = try store.latestVerified(as: TrainConfig.self, warn: { output("--resume auto: " + $0) }) else {
            output("--resume auto: no checkpoint in \(store.directory.path) yet; starting from the beginning")
            return nil
        }
        output("--resume auto: resuming from \(folder.path)")
        return folder
    }

    /// The files of the job's data the coordinator serves to workers that cannot see them. Token
    /// shards are read in place by every worker (their paths made absolute; a worker without them
    /// fetches the files listed here), their validation split too; a pre-batched token file is
    /// used as it is; other sources are tokenised once into run-dir/tokens.safetensors (1-D int32),
    /// and `config.data` is rewritten to point at it. There the held-out validation tokens
    /// (`data.validation_fraction` of the stream's tail, or `data.validation_path`) go into the
    /// same file as the tensor `validation`, so a worker that fetches the file gets both, and
    /// training's `tokens` hold none of them.
    private func prepareTokens(_ config: inout TrainConfig) throws -> [String] {
        switch config.data.source {
        case "tokens", "shards":
            let path = URL(fileURLWithPath: config.data.path!).standardizedFileURL.path
            config.data.path = path
            if let v = config.data.validationPath { config.data.validationPath = URL(fileURLWithPath: v).standardizedFileURL.path }
            guard config.data.source == "shards" else { return [path] }
            // Opened here once: a missing, empty or corrupt shard fails the job before any worker starts.
            let split = try ValidationSplit.load(config.data)
            guard case .mapped(let tokens, _) = split.train else { return [] }
            output("token shards \(path): \(tokens.count) tokens in \(tokens.shards.count) files, read in place by every worker"
                   + (split.validation.map { " (+ \($0.count) validation tokens)" } ?? ""))
            let withScores = config.data.curriculum?.difficulty == "score"
            let validation = try config.data.validationPath.map { try TokenShard.files(at: $0, split: "validation") } ?? []
            return tokens.shards.flatMap { [$0.path] + (withScores ? [DifficultyFile.path(forShard: $0.path)] : []) } + validation
        default:
            break
        }
        let split = try ValidationSplit.load(config.data)
        guard case .stream(let tokens) = split.train else { return [] }
        let url = runDirectory.appendingPathComponent("tokens.safetensors")
        var writer = SafeTensorsWriter()
        writer.add("tokens", shape: [tokens.count], int32s: tokens)
        if let validation = split.validation { writer.add("validation", shape: [validation.count], int32s: validation) }
        try writer.write(to: url)
        config.data.source = "tokens"
        config.data.path = url.path
        config.data.validationFraction = 0
        config.data.validationPath = nil
        output("tokenised \(tokens.count) tokens into \(url.path)"
               + (split.validation.map { " (+ \($0.count) held-out validation tokens)" } ?? ""))
        return [url.path]
    }
}

/// A metrics.jsonl record of the cluster: the step's metrics plus its time split.
struct ClusterStepRecord: Encodable {
    let metrics: StepMetrics
    let worldSize: Int
    let computeSeconds: Double
    let exposedCommunicationSeconds: Double
    let idleSeconds: Double
    /// Seconds the slowest rank spent on checkpoint snapshots before this step (the writes run in the background).
    let checkpointSeconds: Double
    /// Seconds the slowest rank spent on its replica snapshot after this step (the exchange runs in the background).
    let replicaSeconds: Double
    /// Per rank: payload bytes sent in the step by collective.
    let bytesSentPerRank: [[String: Int]]
    /// Per rank: the device-memory ledger (current and peak bytes by category).
    let memoryPerRank: [MemoryLedger.Snapshot]
    /// The scalars of the TensorBoard event file, by tag (non-finite ones as "NaN", "Infinity", "-Infinity").
    let scalars: [String: Double]

    enum CodingKeys: String, CodingKey {
        case worldSize = "world_size", computeSeconds = "compute_seconds"
        case exposedCommunicationSeconds = "exposed_communication_seconds", idleSeconds = "idle_seconds"
        case checkpointSeconds = "checkpoint_seconds", replicaSeconds = "replica_seconds"
        case bytesSentPerRank = "bytes_sent_per_rank", memoryPerRank = "memory_per_rank", scalars
    }

    func encode(to encoder: Encoder) throws {
        try metrics.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(worldSize, forKey: .worldSize)
        try c.encode(computeSeconds, forKey: .computeSeconds)
        try c.encode(exposedCommunicationSeconds, forKey: .exposedCommunicationSeconds)
        try c.encode(idleSeconds, forKey: .idleSeconds)
        try c.encode(checkpointSeconds, forKey: .checkpointSeconds)
        try c.encode(replicaSeconds, forKey: .replicaSeconds)
        try c.encode(bytesSentPerRank, forKey: .bytesSentPerRank)
        try c.encode(memoryPerRank, forKey: .memoryPerRank)
        var s = c.nestedContainer(keyedBy: Tag.self, forKey: .scalars)
        for (tag, value) in scalars {
            if value.isFinite { try s.encode(value, forKey: Tag(tag)) } else {
                try s.encode(value.isNaN ? "NaN" : value > 0 ? "Infinity" : "-Infinity", forKey: Tag(tag))
            }
        }
    }

    struct Tag: CodingKey {
        let stringValue: String
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }
}
