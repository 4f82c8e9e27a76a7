import ArgumentParser
import Cluster
import Foundation
import Training

struct Launch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a job on the hosts of a hostfile: the coordinator here, a worker per host (over ssh, pdsh, or here with --launcher none).",
        discussion: "Hostfile lines: `host slots=N` (N devices on that host), `#` comments. Every process's output is printed with its host as prefix. Ctrl-C or SIGTERM stops the job cleanly (checkpoint first). Exits with the coordinator's status: 0 only when the job finished.")

    @Option(name: .long, help: "DeepSpeed-style hostfile.")
    var hostfile: String

    @Option(name: .long, help: "Config file.")
    var config: String

    @Option(name: .long, help: "How workers are started: ssh, pdsh or none (on this host).")
    var launcher: String = "ssh"

    @Option(name: .long, help: "Control port of the coordinator (0: any free port).")
    var port: Int = 5555

    @Option(name: .long, help: "Address the workers reach this host at (default: this host's name; 127.0.0.1 with --launcher none).")
    var coordinatorAddress: String?

    @Option(name: .long, help: "Path of zerotrain on the hosts (default: this binary's path).")
    var remoteBinary: String?

    @Option(name: .long, help: "Working directory on the hosts (default: the current one).")
    var remoteDirectory: String?

    @Option(name: .long, help: "Compute threads per device (default: training.threads).")
    var threads: Int?

    @Option(name: .long, help: "Run directory (default: runs/<config name>).")
    var runDir: String?

    @Flag(name: .long, help: "Without security: keys, let the coordinator and workers listen beyond loopback (prints a warning; trusted networks only).")
    var insecureListen = false

    @OptionGroup var monitoring: MonitoringOptions

    func run() async throws {
        try await runReportingErrors {
            guard let kind = HostLauncher.Kind(rawValue: launcher) else {
                throw ValidationError("--launcher \(launcher): unknown launcher; use one of ssh, pdsh, none")
            }
            guard (0...65535).contains(port) else { throw ValidationError("--port \(port): expected 0–65535") }
            if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
            _ = try monitoring.resolved()
            guard let text = try? String(contentsOfFile: hostfile, encoding: .utf8) else {
                throw ValidationError("--hostfile \(hostfile): cannot read the file")
            }
            let hosts = try Hostfile(parsing: text, path: hostfile)
            let cfg = try TrainConfig.load(path: config)
            let name = URL(fileURLWithPath: config).deletingPathExtension().lastPathComponent
            var options = HostLauncher.Options(configPath: URL(fileURLWithPath: config).standardizedFileURL.path, hostfile: hosts,
                                               runDirectory: URL(fileURLWithPath: runDir ?? "runs/\(name)"))
            options.launcher = kind
            options.port = port
            options.coordinatorAddress = coordinatorAddress
            options.remoteBinary = remoteBinary
            options.remoteDirectory = remoteDirectory
            options.threads = threads
            options.coordinatorArguments = monitoring.arguments
            options.insecureListen = insecureListen
            options.workersReadConfig = cfg.security != nil
            let launcher = HostLauncher(options: options)
            let code = try await runAsService("launch", body: { try launcher.run() }, stop: { launcher.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}
