import Foundation

/// `zerotrain local`: a coordinator and N workers on this host, as separate processes of this
/// executable, talking over loopback tcp. The coordinator's output is streamed; workers' output
/// goes to run-dir/worker-N.log. Every child watches its stdin, a pipe from this process, and
/// exits when it closes, so no child outlives the launcher, however the launcher ends.
public final class LocalCluster {
    public struct Options {
        public var configPath: String
        public var workers: Int
        public var devices = 1
        public var threads: Int?
        public var runDirectory: URL
        public var resume: String?
        /// Where the coordinator's output goes; nil = this process's stdout.
        public var coordinatorLog: URL?
        public init(configPath: String, workers: Int, runDirectory: URL) {
            self.configPath = configPath
            self.workers = workers
            self.runDirectory = runDirectory
        }
    }

    public let options: Options
    public let executable: URL
    public var output: (String) -> Void = { print($0) }
    public var shouldStop: () -> Bool = { false }

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

    /// Runs the job; returns the coordinator's exit code (0 only when the job finished).
    public func run() throws -> Int32 {
        let fm = FileManager.default
        try? fm.createDirectory(at: options.runDirectory, withIntermediateDirectories: true)
        let endpointFile = options.runDirectory.appendingPathComponent("coordinator.endpoint")
        try? fm.removeItem(at: endpointFile)
        var children: [Process] = []
        var lifelines: [Pipe] = []
        func spawn(_ args: [String], stdout: Any) throws -> Process {
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
            try p.run()
            lifelines.append(lifeline)
            children.append(p)
            return p
        }
        defer {
            // Whatever happened: give children a moment, then make sure none is left.
            let deadline = Date().addingTimeInterval(10)
            while children.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
            for p in children where p.isRunning { kill(p.processIdentifier, SIGKILL) }
            for p in children { p.waitUntilExit() }
        }
        var coordinatorArgs = ["coordinator", "--config", options.configPath, "--listen", "tcp://127.0.0.1:*",
                               "--run-dir", options.runDirectory.path, "--workers", String(options.workers)]
        if let resume = options.resume { coordinatorArgs += ["--resume", resume] }
        var coordinatorOut: Any = FileHandle.standardOutput
        if let log = options.coordinatorLog {
            _ = fm.createFile(atPath: log.path, contents: nil)
            coordinatorOut = try FileHandle(forWritingTo: log)
        }
        let coordinator = try spawn(coordinatorArgs, stdout: coordinatorOut)
        let start = Date()
        while !fm.fileExists(atPath: endpointFile.path) {
            guard coordinator.isRunning else {
                coordinator.waitUntilExit()
                return coordinator.terminationStatus
            }
            guard Date().timeIntervalSince(start) < 60 else { throw ClusterError(.runtime, "the coordinator did not start within 60 s") }
            usleep(10_000)
        }
        let endpoint = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for i in 0..<options.workers {
            let log = options.runDirectory.appendingPathComponent("worker-\(i).log")
            _ = fm.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            var args = ["worker", "--coordinator", endpoint, "--devices", String(options.devices)]
            if let t = options.threads { args += ["--threads", String(t)] }
            _ = try spawn(args, stdout: handle)
        }
        // A worker that dies is noticed by the coordinator (heartbeats), which fails the job.
        var forwarded = false
        while coordinator.isRunning {
            if !forwarded && shouldStop() {
                forwarded = true
                kill(coordinator.processIdentifier, SIGTERM)
            }
            usleep(20_000)
        }
        coordinator.waitUntilExit()
        return coordinator.terminationStatus
    }
}
