import Common
import Foundation

/// `zerotrain launch`: the coordinator on this host and one worker per hostfile line, started
/// over ssh, pdsh, or (`none`) on this host, with as many devices as the line's slots. Every
/// line of every process is printed with its host as prefix. A stop request (Ctrl-C, SIGTERM) is
/// forwarded to the coordinator, which checkpoints and shuts the workers down; when the
/// coordinator has exited, workers still running get a grace period, then are killed. The
/// launcher waits on events only: a process's output or exit, or a stop request.
public final class HostLauncher: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case ssh, pdsh, none
    }

    public struct Options: Sendable {
        public var configPath: String
        public var hostfile: Hostfile
        public var launcher = Kind.ssh
        public var runDirectory: URL
        /// Control port of the coordinator (0: any free port).
        public var port = 5555
        /// The address workers reach this host at (default: this host's name; 127.0.0.1 with `none`).
        public var coordinatorAddress: String?
        /// The zerotrain binary on the remote hosts (default: this binary's path).
        public var remoteBinary: String?
        /// Working directory on the remote hosts (default: this process's).
        public var remoteDirectory: String?
        public var threads: Int?
        /// More `zerotrain coordinator` arguments (monitoring).
        public var coordinatorArguments: [String] = []
        /// Without keys, let the coordinator and workers listen beyond loopback (`--insecure-listen`).
        public var insecureListen = false
        /// Pass the config to the workers (it has a `security:` section they need).
        public var workersReadConfig = false
        public init(configPath: String, hostfile: Hostfile, runDirectory: URL) {
            self.configPath = configPath
            self.hostfile = hostfile
            self.runDirectory = runDirectory
        }
    }

    public let options: Options
    public let executable: URL
    public static let childExitGrace: Duration = .seconds(15)

    private struct Events {
        var coordinatorStatus: Int32?
        var endpoint: String?
        var workerExits: [(host: String, status: Int32)] = []
        var running = 0
        var stop = false
    }
    private let events = Monitor(Events())
    private let output: @Sendable (String) -> Void
    private let printLock = Monitor(())

    public init(options: Options, executable: URL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath(),
                output: @escaping @Sendable (String) -> Void = { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }) {
        self.options = options
        self.executable = executable
        self.output = output
    }

    /// Forwards a stop to the coordinator. Safe from any thread.
    public func requestStop() { events.withLock { $0.stop = true } }

    /// The command that runs `args` (a zerotrain command line) on `host`.
    public static func command(_ kind: Kind, host: String, binary: String, directory: String, args: [String]) -> [String] {
        let remote = "cd \(shellQuoted(directory)) && exec " + ([binary] + args).map(shellQuoted).joined(separator: " ")
        switch kind {
        case .none: return [binary] + args
        case .ssh: return ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", host, "--", remote]
        case .pdsh: return ["pdsh", "-N", "-w", host, remote]
        }
    }

    static func shellQuoted(_ s: String) -> String {
        s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./:=@,+".contains($0) }) && !s.isEmpty ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Runs the job; returns the coordinator's exit code.
    public func run() throws -> Int32 {
        let fm = FileManager.default
        try? fm.createDirectory(at: options.runDirectory, withIntermediateDirectories: true)
        var children: [Process] = []
        var lifelines: [Pipe] = []
        let events = self.events
        func say(_ line: String) { printLock.withLock { _ in output(line) } }

        /// Starts `command` (argv); its output lines are printed after `label`; `onLine` sees each line too.
        func spawn(_ command: [String], label: String, onExit: @escaping @Sendable (Int32) -> Void,
                   onLine: (@Sendable (String) -> Void)? = nil) throws {
            let p = Process()
            if command[0].hasPrefix("/") {
                p.executableURL = URL(fileURLWithPath: command[0])
                p.arguments = Array(command.dropFirst())
            } else {
                p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                p.arguments = command
            }
            var env = ProcessInfo.processInfo.environment
            env[LocalCluster.watchParentVariable] = "1"
            p.environment = env
            let lifeline = Pipe(), out = Pipe()
            p.standardInput = lifeline
            p.standardOutput = out
            p.standardError = out
            let buffer = Monitor(Data())
            let printLock = self.printLock, output = self.output
            out.fileHandleForReading.readabilityHandler = { handle in
                let chunk = handle.availableData
                let lines: [String] = buffer.withLock { b in
                    if chunk.isEmpty { defer { b = Data() }; return b.isEmpty ? [] : [String(decoding: b, as: UTF8.self)] }
                    b.append(chunk)
                    var lines: [String] = []
                    while let nl = b.firstIndex(of: 0x0A) {
                        lines.append(String(decoding: b[b.startIndex..<nl], as: UTF8.self))
                        b = Data(b[(nl + 1)...])
                    }
                    return lines
                }
                if chunk.isEmpty { handle.readabilityHandler = nil }
                for line in lines {
                    printLock.withLock { _ in output("[\(label)] " + line.replacingOccurrences(of: "\r", with: "")) }
                    onLine?(line)
                }
            }
            p.terminationHandler = { p in
                events.withLock { $0.running -= 1 }
                onExit(p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus)
            }
            events.withLock { $0.running += 1 }
            do {
                try p.run()
            } catch {
                events.withLock { $0.running -= 1 }
                throw ClusterError(.runtime, "cannot start \(command[0]) for \(label)", cause: error)
            }
            lifelines.append(lifeline)
            children.append(p)
        }
        defer {
            for lifeline in lifelines { try? lifeline.fileHandleForWriting.close() }
            let allExited = events.wait(until: .now + Self.childExitGrace) { $0.running == 0 ? true : nil } ?? false
            if !allExited {
                for p in children where p.isRunning { kill(p.processIdentifier, SIGKILL) }
                _ = events.wait(until: .now + .seconds(5)) { $0.running == 0 ? true : nil }
            }
        }

        let hosts = options.hostfile.hosts
        // On this host only (`none`), the coordinator listens on loopback.
        let listenHost = options.launcher == .none ? "127.0.0.1" : "0.0.0.0"
        var coordinatorArgs = ["coordinator", "--config", options.configPath, "--listen", "tcp://\(listenHost):\(options.port == 0 ? "*" : String(options.port))",
                               "--run-dir", options.runDirectory.path, "--workers", String(hosts.count)]
        if options.insecureListen { coordinatorArgs.append("--insecure-listen") }
        coordinatorArgs += options.coordinatorArguments
        try spawn([executable.path] + coordinatorArgs, label: "coordinator",
                  onExit: { status in events.withLock { $0.coordinatorStatus = status } },
                  onLine: { line in
                      // "coordinator listening on tcp://0.0.0.0:PORT; …": the port workers connect to.
                      guard line.hasPrefix("coordinator listening on "), let end = line.firstIndex(of: ";") else { return }
                      let endpoint = String(line[line.index(line.startIndex, offsetBy: 25)..<end])
                      events.withLock { $0.endpoint = endpoint }
                  })
        enum First { case endpoint(String), exited(Int32) }
        let first = events.wait { e -> First? in
            if let s = e.coordinatorStatus { return .exited(s) }
            return e.endpoint.map(First.endpoint)
        }
        guard case let .endpoint(bound) = first else {
            if case let .exited(status) = first { return status }
            return 1
        }
        guard let port = bound.split(separator: ":").last.map(String.init) else { return 1 }
        let address = options.coordinatorAddress ?? (options.launcher == .none ? "127.0.0.1" : ProcessInfo.processInfo.hostName)
        let coordinatorEndpoint = "tcp://\(LaunchEnvironment.bracketed(address)):\(port)"
        say("launch: \(hosts.count) worker(s), \(options.hostfile.totalSlots) rank(s), coordinator at \(coordinatorEndpoint), launcher \(options.launcher.rawValue)")
        let binary = options.launcher == .none ? executable.path : (options.remoteBinary ?? executable.path)
        let directory = options.remoteDirectory ?? fm.currentDirectoryPath
        for (i, host) in hosts.enumerated() {
            // Ranks follow the hostfile: the first host's devices are ranks 0..<slots, and so on.
            var args = ["worker", "--coordinator", coordinatorEndpoint, "--devices", String(host.slots), "--launch-rank", String(i)]
            args += ["--advertise", options.launcher == .none ? "127.0.0.1" : host.name]
            if let t = options.threads { args += ["--threads", String(t)] }
            if options.insecureListen { args.append("--insecure-listen") }
            if options.workersReadConfig { args += ["--config", options.configPath] }
            let name = host.name
            try spawn(Self.command(options.launcher, host: host.name, binary: binary, directory: directory, args: args), label: name,
                      onExit: { status in events.withLock { $0.workerExits.append((name, status)) } })
        }
        var forwarded = false
        while true {
            enum Next { case exited(Int32), workers([(host: String, status: Int32)]), stop }
            let next = events.wait { e -> Next? in
                if let c = e.coordinatorStatus { return .exited(c) }
                if !e.workerExits.isEmpty { defer { e.workerExits = [] }; return .workers(e.workerExits) }
                return e.stop && !forwarded ? .stop : nil
            }
            switch next {
            case let .exited(status):
                return status
            case let .workers(exits):
                for exit in exits where exit.status != 0 { say("[\(exit.host)] exited with status \(exit.status)") }
            case .stop:
                forwarded = true
                for p in children.prefix(1) where p.isRunning { kill(p.processIdentifier, SIGTERM) }
            }
        }
    }
}
