import ArgumentParser
import Cluster
import CommZMQ
import Foundation
import Training

#if canImport(Glibc)
import Glibc
#endif

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a job's coordinator: admit workers, assign ranks, drive training, log metrics.")

    @Option(name: .long, help: "Config file (YAML or Hugging Face config.json); default $ZEROTRAIN_CONFIG.")
    var config: String?

    @Option(name: .long, help: "Control endpoint to bind, e.g. tcp://0.0.0.0:5555 (port * = any free port); default $ZEROTRAIN_LISTEN, else tcp://0.0.0.0:5555 with security: keys and tcp://127.0.0.1:5555 without.")
    var listen: String?

    @Flag(name: .long, help: "Without security: keys, listen on a non-loopback address anyway (prints a warning; trusted networks only).")
    var insecureListen = false

    @Option(name: .long, help: "The coordinator's secret key file (overrides security.secret_key_file).")
    var secretKeyFile: String?

    @Option(name: .long, help: "The file of worker public keys to admit (overrides security.allowed_workers).")
    var allowedWorkers: String?

    @Option(name: .long, help: "Run directory: tokenised data, metrics.jsonl, event file, checkpoints, coordinator.endpoint; default $ZEROTRAIN_RUN_DIR.")
    var runDir: String?

    @Option(name: .long, help: "Workers to wait for (default: $ZEROTRAIN_WORKERS, else cluster.workers).")
    var workers: Int?

    @Option(name: .long, help: "Resume from a checkpoint directory (any number of workers).")
    var resume: String?

    @Option(name: .long, help: "Pause after update N: checkpoint it and exit 0 (\"paused at step N\"); --resume continues exactly. N ≥ training.total_steps: no pause.")
    var stopAfterStep: Int?

    @OptionGroup var monitoring: MonitoringOptions

    func run() async throws {
        LocalCluster.watchParentIfAsked()
        try await runReportingErrors {
            let env = ProcessInfo.processInfo.environment
            guard let config = config ?? env["ZEROTRAIN_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) else {
                throw ValidationError("give --config FILE (or set ZEROTRAIN_CONFIG)")
            }
            guard let runDir = runDir ?? env["ZEROTRAIN_RUN_DIR"].flatMap({ $0.isEmpty ? nil : $0 }) else {
                throw ValidationError("give --run-dir DIR (or set ZEROTRAIN_RUN_DIR)")
            }
            var workers = self.workers
            if workers == nil, let text = env["ZEROTRAIN_WORKERS"], !text.isEmpty {
                guard let n = Int(text), n >= 1 else { throw ValidationError("ZEROTRAIN_WORKERS=\(text): expected a whole number ≥ 1") }
                workers = n
            }
            var cfg = try TrainConfig.load(path: config)
            if let workers { cfg.cluster.workers = workers }
            if secretKeyFile != nil || allowedWorkers != nil {
                var s = cfg.security ?? SecurityConfig()
                s.secretKeyFile = secretKeyFile ?? s.secretKeyFile
                s.allowedWorkers = allowedWorkers ?? s.allowedWorkers
                cfg.security = s
            }
            try cfg.validate()
            if let stopAfterStep, stopAfterStep < 1 { throw ValidationError("--stop-after-step must be ≥ 1, got \(stopAfterStep)") }
            let security = try SecurityResolver.coordinator(cfg.security)
            let listen = listen ?? env["ZEROTRAIN_LISTEN"].flatMap { $0.isEmpty ? nil : $0 } ?? "tcp://\(security == nil ? "127.0.0.1" : "0.0.0.0"):5555"
            try SecurityResolver.checkListen(host: SecurityResolver.tcpHost(listen), secured: security != nil,
                                             insecure: insecureListen || env["ZEROTRAIN_INSECURE_LISTEN"] == "1", what: "--listen")
            let coordinator = Coordinator(config: cfg, listen: listen, runDirectory: URL(fileURLWithPath: runDir), resume: resume, pauseStep: stopAfterStep,
                                          network: try ZMQNetwork(security: security, log: Console.out), monitoring: try monitoring.resolved(), output: Console.out)
            let code = try await runAsService("coordinator", body: { try coordinator.run() }, stop: { coordinator.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: host CPU devices (ranks) for a coordinator's job.",
        discussion: "Options left out are taken from the environment: ZEROTRAIN_COORDINATOR, ZEROTRAIN_DEVICES, ZEROTRAIN_THREADS, ZEROTRAIN_ADVERTISE, ZEROTRAIN_CONFIG, ZEROTRAIN_WORLD_SIZE, ZEROTRAIN_RANK, ZEROTRAIN_NUMA_NODE, ZEROTRAIN_CONNECT_TIMEOUT; then torchrun's MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK; then Slurm's SLURM_JOB_NODELIST (its first node is the coordinator, port ZEROTRAIN_PORT or 5555), SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID, SLURMD_NODENAME (docs/operations.md).")

    @Option(name: .long, help: "The coordinator's control endpoint, e.g. tcp://host:5555.")
    var coordinator: String?

    @Option(name: .long, help: "CPU devices (ranks) in this worker (default 1).")
    var devices: Int?

    @Option(name: .long, help: "Compute threads per device (default: training.threads).")
    var threads: Int?

    @Option(name: .long, help: "NUMA node of the first device (later devices go round-robin).")
    var numaNode: Int?

    @Option(name: .long, help: "Address other workers use to reach this one (default 127.0.0.1).")
    var advertise: String?

    @Option(name: .long, help: "Seconds to keep trying to reach the coordinator (default 60).")
    var connectTimeout: Double?

    @Option(name: .long, help: "Refuse to join unless the job runs this config file.")
    var config: String?

    @Option(name: .long, help: "Refuse to join unless the job has this many ranks.")
    var worldSize: Int?

    @Option(name: .long, help: "The worker's own directory: a token file this host cannot see is fetched from the coordinator into it (default: $ZEROTRAIN_WORKER_DIR, $STATE_DIRECTORY under systemd, else the current directory).")
    var runDir: String?

    @Option(name: .long, help: "This worker's index in its launcher's order (torchrun RANK, SLURM_PROCID; default from the environment): when every worker has one, ranks are given in that order.")
    var launchRank: Int?

    @Option(name: .long, help: "This worker's secret key file (zerotrain keygen; default $ZEROTRAIN_SECRET_KEY_FILE, else security.secret_key_file of --config).")
    var secretKeyFile: String?

    @Option(name: .long, help: "The coordinator's public key to pin: Z85 text or its .pub file (default $ZEROTRAIN_COORDINATOR_KEY, else security.coordinator_public_key of --config).")
    var coordinatorKey: String?

    @Option(name: .long, help: "The job token to register with (default $ZEROTRAIN_JOB_TOKEN, else security.job_token of --config).")
    var jobToken: String?

    @Flag(name: .long, help: "Ring links in the clear even with keys (security.encrypt_data_plane: false; the coordinator refuses a mismatch).")
    var noEncryptDataPlane = false

    @Flag(name: .long, help: "Without keys, advertise (bind the ring link on) a non-loopback address anyway (prints a warning; trusted networks only).")
    var insecureListen = false

    @Option(name: .long, help: .hidden)
    var protocolVersion: Int?

    func validate() throws {
        if let launchRank, launchRank < 0 { throw ValidationError("--launch-rank must be ≥ 0") }
        if let devices, devices < 1 { throw ValidationError("--devices must be ≥ 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
    }

    func run() async throws {
        LocalCluster.watchParentIfAsked()
        // Ctrl-C in a terminal reaches every process of the group: workers leave stopping to the
        // coordinator, which checkpoints and then shuts them down. SIGTERM makes a worker leave.
        signal(SIGINT, SIG_IGN)
        try await runReportingErrors {
            let processEnv = ProcessInfo.processInfo.environment
            let env = try LaunchEnvironment(processEnv)
            guard let endpoint = coordinator ?? env.coordinator else {
                throw ValidationError("give --coordinator tcp://HOST:PORT (or set ZEROTRAIN_COORDINATOR, torchrun's MASTER_ADDR/MASTER_PORT, or run under Slurm)")
            }
            var options = Worker.Options(coordinator: endpoint)
            options.devices = devices ?? env.devices ?? 1
            options.threads = threads ?? env.threads
            options.numaNode = numaNode ?? env.numaNode
            options.advertiseHost = advertise ?? env.advertise ?? processEnv["SLURMD_NODENAME"] ?? "127.0.0.1"
            options.connectTimeoutSeconds = connectTimeout ?? env.connectTimeoutSeconds ?? 60
            // A world size from WORLD_SIZE/SLURM_NTASKS counts processes of one device each unless ZEROTRAIN_DEVICES says more.
            options.expectedWorldSize = worldSize ?? env.worldSize
            options.launchRank = launchRank ?? env.launchRank
            if let dir = runDir ?? processEnv["ZEROTRAIN_WORKER_DIR"] ?? processEnv["STATE_DIRECTORY"], !dir.isEmpty {
                options.runDirectory = URL(fileURLWithPath: dir)
            }
            if let protocolVersion { options.protocolVersion = protocolVersion }
            if coordinator == nil || devices == nil, !env.sources.isEmpty { Console.out("worker: " + env.sources.joined(separator: "; ")) }
            // Fault injection for scripts/chaos.sh (docs/fault-tolerance.md): through the environment,
            // so that `zerotrain local` passes it to every worker it starts.
            options.faultDelays.afterShardWriteMs = Double(processEnv["ZEROTRAIN_FAULT_SLOW_SHARD_WRITE_MS"] ?? "") ?? 0
            options.faultDelays.beforeReplicaExchangeMs = Double(processEnv["ZEROTRAIN_FAULT_SLOW_REPLICA_MS"] ?? "") ?? 0
            var security = SecurityConfig()
            if let config = config ?? env.config {
                let cfg = try TrainConfig.load(path: config)
                options.configHash = cfg.fingerprint
                security = cfg.security ?? security
            }
            func setting(_ flag: String?, _ name: String) -> String? { flag ?? processEnv[name].flatMap { $0.isEmpty ? nil : $0 } }
            security.secretKeyFile = setting(secretKeyFile, "ZEROTRAIN_SECRET_KEY_FILE") ?? security.secretKeyFile
            security.coordinatorPublicKey = setting(coordinatorKey, "ZEROTRAIN_COORDINATOR_KEY") ?? security.coordinatorPublicKey
            security.jobToken = setting(jobToken, "ZEROTRAIN_JOB_TOKEN") ?? security.jobToken
            if noEncryptDataPlane { security.encryptDataPlane = false }
            let keys = try SecurityResolver.worker(security)
            options.jobToken = security.jobToken
            options.authenticated = keys != nil
            options.encryptsRing = keys?.encryptDataPlane
            try SecurityResolver.checkListen(host: options.advertiseHost, secured: keys != nil,
                                             insecure: insecureListen || processEnv["ZEROTRAIN_INSECURE_LISTEN"] == "1", what: "--advertise")
            let worker = Worker(options: options, network: try ZMQNetwork(security: keys, log: Console.out), output: Console.out)
            let code = try await runAsService("worker", signals: [.sigterm], body: { try worker.run() }, stop: { worker.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}

struct Local: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a coordinator and N workers on this host as separate processes.",
        discussion: "Exits 0 only when the job finished (or paused at --stop-after-step). Ctrl-C or SIGTERM stops the job cleanly (checkpoint first); no process is left behind.")

    @Option(name: .long, help: "Config file.")
    var config: String

    @Option(name: .long, help: "Worker processes (default: cluster.workers).")
    var workers: Int?

    @Option(name: .long, help: "Devices (ranks) per worker.")
    var devices: Int = 1

    @Option(name: .long, help: "Compute threads per device (default: training.threads).")
    var threads: Int?

    @Option(name: .long, help: "Run directory (default: runs/<config name>).")
    var runDir: String?

    @Option(name: .long, help: "Resume from a checkpoint directory.")
    var resume: String?

    @Option(name: .long, help: "Pause after update N: checkpoint it and exit 0 (\"paused at step N\"); --resume auto continues exactly.")
    var stopAfterStep: Int?

    @Flag(name: .long, help: "CURVE on both planes with keys generated for this job in RUN_DIR/keys (docs/security.md).")
    var curve = false

    @OptionGroup var monitoring: MonitoringOptions

    func run() async throws {
        LocalCluster.watchParentIfAsked()
        try await runReportingErrors {
            _ = try monitoring.resolved()
            let cfg = try TrainConfig.load(path: config)
            let name = URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
            var options = LocalCluster.Options(configPath: config, workers: workers ?? cfg.cluster.workers,
                                               runDirectory: URL(fileURLWithPath: runDir ?? "runs/\(name)"))
            options.devices = devices
            options.threads = threads
            options.resume = resume
            options.coordinatorArguments = monitoring.arguments + (stopAfterStep.map { ["--stop-after-step", String($0)] } ?? [])
            guard options.workers >= 1, devices >= 1 else { throw ClusterError(.badInput, "--workers and --devices must be ≥ 1") }
            if let stopAfterStep, stopAfterStep < 1 { throw ClusterError(.badInput, "--stop-after-step must be ≥ 1, got \(stopAfterStep)") }
            if curve {
                let keys = try LocalKeys.generate(in: options.runDirectory.appendingPathComponent("keys"), workers: options.workers)
                options.coordinatorArguments += ["--secret-key-file", keys.coordinatorSecret, "--allowed-workers", keys.allowList]
                options.workerArguments = { slot in ["--secret-key-file", keys.workerSecrets[slot], "--coordinator-key", keys.coordinatorPublic] }
            }
            let cluster = LocalCluster(options: options)
            let code = try await runAsService("local", body: { try cluster.run() }, stop: { cluster.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}
