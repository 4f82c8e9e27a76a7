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

    @Option(name: .long, help: "Config file (YAML or Hugging Face config.json).")
    var config: String

    @Option(name: .long, help: "Control endpoint to bind, e.g. tcp://0.0.0.0:5555 (port * = any free port).")
    var listen: String = "tcp://0.0.0.0:5555"

    @Option(name: .long, help: "Run directory: tokenised data, metrics.jsonl, checkpoints, coordinator.endpoint.")
    var runDir: String

    @Option(name: .long, help: "Workers to wait for (default: cluster.workers).")
    var workers: Int?

    @Option(name: .long, help: "Resume from a checkpoint directory (any number of workers).")
    var resume: String?

    @OptionGroup var monitoring: MonitoringOptions

    func run() async throws {
        LocalCluster.watchParentIfAsked()
        try await runReportingErrors {
            var cfg = try TrainConfig.load(path: config)
            if let workers { cfg.cluster.workers = workers }
            try cfg.validate()
            let coordinator = Coordinator(config: cfg, listen: listen, runDirectory: URL(fileURLWithPath: runDir), resume: resume,
                                          network: try ZMQNetwork(), monitoring: try monitoring.resolved(), output: Console.out)
            let code = try await runAsService("coordinator", body: { try coordinator.run() }, stop: { coordinator.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: host CPU devices (ranks) for a coordinator's job.")

    @Option(name: .long, help: "The coordinator's control endpoint, e.g. tcp://host:5555.")
    var coordinator: String

    @Option(name: .long, help: "CPU devices (ranks) in this worker.")
    var devices: Int = 1

    @Option(name: .long, help: "Compute threads per device (default: training.threads).")
    var threads: Int?

    @Option(name: .long, help: "NUMA node of the first device (later devices go round-robin).")
    var numaNode: Int?

    @Option(name: .long, help: "Address other workers use to reach this one.")
    var advertise: String = "127.0.0.1"

    @Option(name: .long, help: "Seconds to keep trying to reach the coordinator.")
    var connectTimeout: Double = 60

    @Option(name: .long, help: "Refuse to join unless the job runs this config file.")
    var config: String?

    @Option(name: .long, help: "Refuse to join unless the job has this many ranks.")
    var worldSize: Int?

    @Option(name: .long, help: .hidden)
    var protocolVersion: Int?

    func validate() throws {
        guard devices >= 1 else { throw ValidationError("--devices must be ≥ 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
    }

    func run() async throws {
        LocalCluster.watchParentIfAsked()
        // Ctrl-C in a terminal reaches every process of the group: workers leave stopping to the
        // coordinator, which checkpoints and then shuts them down. SIGTERM makes a worker leave.
        signal(SIGINT, SIG_IGN)
        try await runReportingErrors {
            var options = Worker.Options(coordinator: coordinator)
            options.devices = devices
            options.threads = threads
            options.numaNode = numaNode
            options.advertiseHost = advertise
            options.connectTimeoutSeconds = connectTimeout
            options.expectedWorldSize = worldSize
            if let protocolVersion { options.protocolVersion = protocolVersion }
            // Fault injection for scripts/chaos.sh (docs/fault-tolerance.md): through the environment,
            // so that `zerotrain local` passes it to every worker it starts.
            let env = ProcessInfo.processInfo.environment
            options.faultDelays.afterShardWriteMs = Double(env["ZEROTRAIN_FAULT_SLOW_SHARD_WRITE_MS"] ?? "") ?? 0
            options.faultDelays.beforeReplicaExchangeMs = Double(env["ZEROTRAIN_FAULT_SLOW_REPLICA_MS"] ?? "") ?? 0
            if let config { options.configHash = try TrainConfig.load(path: config).fingerprint }
            let worker = Worker(options: options, network: try ZMQNetwork(), output: Console.out)
            let code = try await runAsService("worker", signals: [.sigterm], body: { try worker.run() }, stop: { worker.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}

struct Local: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a coordinator and N workers on this host as separate processes.",
        discussion: "Exits 0 only when the job finished. Ctrl-C or SIGTERM stops the job cleanly (checkpoint first); no process is left behind.")

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

    @OptionGroup var monitoring: MonitoringOptions

    func run() async throws {
        try await runReportingErrors {
            _ = try monitoring.resolved()
            let cfg = try TrainConfig.load(path: config)
            let name = URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
            var options = LocalCluster.Options(configPath: config, workers: workers ?? cfg.cluster.workers,
                                               runDirectory: URL(fileURLWithPath: runDir ?? "runs/\(name)"))
            options.devices = devices
            options.threads = threads
            options.resume = resume
            options.coordinatorArguments = monitoring.arguments
            guard options.workers >= 1, devices >= 1 else { throw ClusterError(.badInput, "--workers and --devices must be ≥ 1") }
            let cluster = LocalCluster(options: options)
            let code = try await runAsService("local", body: { try cluster.run() }, stop: { cluster.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}
