import Common
import Foundation
import Training

/// `zerotrain local`: a coordinator and N workers on this host, as separate processes of this
/// executable. The control plane runs over a Unix socket (ipc) whose name the launcher picks, so
/// every process starts at once (workers retry until the coordinator is up); ring links are
/// loopback tcp. The coordinator's output is streamed; workers' output goes to
/// run-dir/worker-N.log. Every child watches its stdin, a pipe from this process, and exits when
/// it closes, so no child outlives the launcher, however the launcher ends. The launcher waits on
/// events only: the coordinator's exit, or a stop request.
public final class LocalCluster: Sendable {
    public struct Options: Sendable {
        public var configPath: String
        public var workers: Int
        public var devices = 1
        public var threads: Int?
        public var runDirectory: URL
        public var resume: String?
        /// Where the coordinator's output goes; nil = this process's stdout.
        public var coordinatorLog: URL?
        /// More `zerotrain coordinator` arguments (monitoring: `--http`, `--peak-gflops`).
        public var coordinatorArguments: [String] = []
        /// More `zerotrain worker` arguments for the worker of each slot (its keys, `--curve`).
        public var workerArguments: @Sendable (Int) -> [String] = { _ in [] }
        public init(configPath: String, workers: Int, runDirectory: URL) {
            self.configPath = configPath
            self.workers = workers
            self.runDirectory = runDirectory
        }
    }

    public let options: Options
    public let executable: URL
    /// How long children get to exit after the coordinator did, before they are killed.
    public static let childExitGrace: Duration = .seconds(10)

    private struct Events {
        var coordinatorStatus: (status: Int32, signalled: Bool)?
        /// Workers (by slot) that exited since the loop last looked, with how.
        var workerExits: [(slot: Int, status: Int32, signalled: Bool)] = []
        var running = 0
        var stop = false
    }
    private let events = Monitor(Events())

    public init(options: Options, executable: URL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()) {
        self.options = options
        self.executable = executable
    }

    /// Environment variable that makes a child exit when its stdin closes.
    public static let watchParentVariable = "ZEROTRAIN_EXIT_WITH_PARENT"

    /// Call early in a child: if asked to, exit as soon as stdin reaches end-of-file (the parent is gone).
    public static func watchParentIfAsked() {
        guard ProcessInfo.processInfo.environment[watchParentVariable] == "1" else { return }
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 64)
            while read(0, &buffer, buffer.count) > 0 {}
            _exit(3)
        }
        thread.name = "zerotrain-parent-watch"
        thread.start()
    }

    /// SIGINT/SIGTERM: forwarded to the coordinator as SIGTERM (it checkpoints and shuts the job
    /// down). Safe from any thread.
    public func requestStop() { events.withLock { $0.stop = true } }

    /// Runs the job; returns the coordinator's exit code (0 only when the job finished).
    public func run() throws -> Int32 {
        let fm = FileManager.default
        try? fm.createDirectory(at: options.runDirectory, withIntermediateDirectories: true)
        let control = fm.temporaryDirectory.appendingPathComponent("zerotrain-local-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ipc")
        let endpoint = "ipc://" + control.path
        var children: [Process] = []
        var lifelines: [Pipe] = []
        let events = self.events
        /// Role of a child: the coordinator, or the worker of a slot (0..<workers).
        enum Role { case coordinator, worker(Int) }
        func spawn(_ args: [String], stdout: Any, role: Role) throws -> Process {
            let p = Process()
            p.executableURL = executable
            p.arguments = args
            var env = ProcessInfo.processInfo.environment
            env[Self.watchParentVariable] = "1"
            p.environment = env
            let lifeline = Pipe()
            p.standardInput = lifeline
            p.standardOutput = stdout
            p.standardError = FileHandle.standardError
            p.terminationHandler = { p in
                let signalled = p.terminationReason == .uncaughtSignal
                events.withLock { e in
                    e.running -= 1
                    switch role {
                    case .coordinator: e.coordinatorStatus = (p.terminationStatus, signalled)
                    case let .worker(slot): e.workerExits.append((slot, p.terminationStatus, signalled))
                    }
                }
            }
            events.withLock { $0.running += 1 }
            do {
                try p.run()
            } catch {
                events.withLock { $0.running -= 1 }
                throw ClusterError(.runtime, "cannot start \(executable.path)", cause: error)
            }
            lifelines.append(lifeline)
            children.append(p)
            return p
        }
        defer {
            // Whatever happened: closing the lifelines tells every child to go; give them a
            // moment, then make sure none is left.
            for lifeline in lifelines { try? lifeline.fileHandleForWriting.close() }
            let allExited = events.wait(until: .now + Self.childExitGrace) { $0.running == 0 ? true : nil } ?? false
            if !allExited {
                for p in children where p.isRunning { kill(p.processIdentifier, SIGKILL) }
                _ = events.wait { $0.running == 0 ? true : nil }
            }
            try? fm.removeItem(at: control)
        }
        var coordinatorArgs = ["coordinator", "--config", options.configPath, "--listen", endpoint,
                               "--run-dir", options.runDirectory.path, "--workers", String(options.workers)]
        if let resume = options.resume { coordinatorArgs += ["--resume", resume] }
        coordinatorArgs += options.coordinatorArguments
        var coordinatorOut: Any = FileHandle.standardOutput
        if let log = options.coordinatorLog {
            _ = fm.createFile(atPath: log.path, contents: nil)
            coordinatorOut = try FileHandle(forWritingTo: log)
        }
        var coordinator = try spawn(coordinatorArgs, stdout: coordinatorOut, role: .coordinator)
        func startWorker(_ slot: Int) throws -> Process {
            let log = options.runDirectory.appendingPathComponent("worker-\(slot).log")
            if !fm.fileExists(atPath: log.path) { _ = fm.createFile(atPath: log.path, contents: nil) }
            let handle = try FileHandle(forWritingTo: log)
            handle.seekToEndOfFile()
            var args = ["worker", "--coordinator", endpoint, "--devices", String(options.devices)]
            if let t = options.threads { args += ["--threads", String(t)] }
            args += options.workerArguments(slot)
            return try spawn(args, stdout: handle, role: .worker(slot))
        }
        var workers = try (0..<options.workers).map(startWorker)
        // With fault_tolerance.policy restart or elastic, dead children are replaced: a worker
        // that died (a signal, or exit 1) by a new worker, a coordinator killed by a signal by a
        // new coordinator that resumes from the newest checkpoint (`--resume auto`). The job's
        // coordinator decides what the new membership is; the launcher only keeps processes alive.
        let faultTolerance = (try? TrainConfig.load(path: options.configPath))?.faultTolerance ?? FaultToleranceConfig()
        var replacements = 0
        func mayReplace() -> Bool { faultTolerance.recovers && replacements < faultTolerance.maxRestarts * max(1, options.workers) }
        func say(_ line: String) { FileHandle.standardError.write(Data(("local: " + line + "\n").utf8)) }
        var forwarded = false
        while true {
            enum Next { case exited(Int32, signalled: Bool), workers([(slot: Int, status: Int32, signalled: Bool)]), stop }
            let next = events.wait { e -> Next? in
                if let c = e.coordinatorStatus { e.coordinatorStatus = nil; return .exited(c.status, signalled: c.signalled) }
                if !e.workerExits.isEmpty { defer { e.workerExits = [] }; return .workers(e.workerExits) }
                return e.stop && !forwarded ? .stop : nil
            }
            switch next {
            case let .exited(status, signalled):
                guard signalled && !forwarded && mayReplace() else { return signalled ? 128 + status : status }
                replacements += 1
                say("the coordinator (pid \(coordinator.processIdentifier)) was killed by signal \(status); starting a new one that resumes from the newest checkpoint")
                var args = coordinatorArgs
                if let i = args.firstIndex(of: "--resume") { args.removeSubrange(i...(i + 1)) }
                coordinator = try spawn(args + ["--resume", "auto"], stdout: coordinatorOut, role: .coordinator)
            case let .workers(exits):
                for exit in exits where !forwarded && (exit.signalled || exit.status == 1) && mayReplace() {
                    replacements += 1
                    say("worker \(exit.slot) (pid \(workers[exit.slot].processIdentifier)) " + (exit.signalled ? "was killed by signal \(exit.status)" : "exited with status 1") + "; starting a replacement")
                    workers[exit.slot] = try startWorker(exit.slot)
                }
            case .stop:
                forwarded = true
                kill(coordinator.processIdentifier, SIGTERM)
            }
        }
    }
}
