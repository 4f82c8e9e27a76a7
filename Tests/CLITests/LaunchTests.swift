import Common
import Foundation
import Testing
import ZeroTrainTestKit

/// A child process with its own environment, output to a file (so a chatty child never blocks).
final class Child {
    let process = Process()
    let log: URL

    init(_ args: [String], environment: [String: String], log: URL, executable: URL = CLI.binary) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = executable
        process.arguments = args
        process.currentDirectoryURL = CLI.repo
        // Launchers' variables of the test's own environment must not leak in.
        var env = ProcessInfo.processInfo.environment.filter { key, _ in
            !key.hasPrefix("SLURM_") && !key.hasPrefix("ZEROTRAIN_") && !["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                                                                           "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"].contains(key)
        }
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Waits up to `timeout` seconds; kills the child if it is still running then.
    @discardableResult
    func wait(_ timeout: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// Launching on hosts: `zerotrain launch` with a hostfile, and workers configured only by the
/// environment variables of torchrun and Slurm.
@Suite(.serialized) struct LaunchTests {
    static let config = """
        model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
        training: {lr: 0.003, warmup_steps: 2, total_steps: 8, micro_batch_size: 2, threads: 1, log_interval: 4, checkpoint_interval: 0}
        data: {seq_len: 32}
        cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000}
        """

    static func records(_ run: URL) -> Int {
        ((try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    @Test func launchWithAHostfileTrainsToCompletion() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = root.appendingPathComponent("job.yaml"), hosts = root.appendingPathComponent("hostfile")
        try CLI.write(Self.config, to: config)
        try CLI.write("# two workers on this host\nlocalhost slots=2\n127.0.0.1 slots=1  # one device\n", to: hosts)
        let run = root.appendingPathComponent("run")
        let r = try CLI.run(["launch", "--hostfile", hosts.path, "--config", config.path, "--launcher", "none", "--port", "0",
                             "--run-dir", run.path], timeout: 120)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("[localhost] worker pid") && r.stdout.contains("ranks 0,1 of 3"), "\(r.stdout)")
        #expect(r.stdout.contains("[127.0.0.1] ") && r.stdout.contains("ranks 2 of 3"))
        #expect(r.stdout.contains("[coordinator] finished 8 steps"))
        #expect(Self.records(run) == 8)
    }

    @Test func badLaunchInputIsAOneLineErrorWithStatus2() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = root.appendingPathComponent("job.yaml"), hosts = root.appendingPathComponent("hosts")
        try CLI.write(Self.config, to: config)
        for (hostfile, launcher, message) in [("a slots=1\nb slots=2\na slots=1\n", "none", "hosts:3: host a is listed twice (first on line 1)"),
                                              ("a slots=two\n", "none", "hosts:2:"), ("a slots=1\n", "rsh", "--launcher rsh: unknown launcher")] {
            try CLI.write(hostfile.hasPrefix("a slots=two") ? "# first\n" + hostfile : hostfile, to: hosts)
            let r = try CLI.run(["launch", "--hostfile", hosts.path, "--config", config.path, "--launcher", launcher], timeout: 30)
            #expect(r.status == 2 && r.stderr.contains(message) && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        }
        // An unparsable Slurm node list, for a worker.
        let worker = try Child(["worker"], environment: ["SLURM_JOB_NODELIST": "node[1-"], log: root.appendingPathComponent("w.log"))
        #expect(worker.wait(30) == 2)
        #expect(worker.output.contains("SLURM_JOB_NODELIST node[1-: cannot expand the node list") && worker.output.split(separator: "\n").count == 1,
                "\(worker.output)")
    }

    /// Three workers started in reverse order, configured by the environment only: the
    /// coordinator's address and the world size from it, and the ranks in the launcher's order.
    @Test(arguments: ["torchrun", "slurm"])
    func environmentStartsAThreeWorkerJob(_ style: String) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = root.appendingPathComponent("job.yaml"), run = root.appendingPathComponent("run")
        try CLI.write(Self.config, to: config)
        let coordinator = try Child(["coordinator", "--listen", "tcp://127.0.0.1:*", "--workers", "3"],
                                    environment: ["ZEROTRAIN_CONFIG": config.path, "ZEROTRAIN_RUN_DIR": run.path], log: root.appendingPathComponent("c.log"))
        let endpointFile = run.appendingPathComponent("coordinator.endpoint")
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: endpointFile.path) && Date() < deadline && coordinator.process.isRunning { usleep(20_000) }
        let endpoint = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let port = try #require(endpoint.split(separator: ":").last.map(String.init))
        let workers = try (0..<3).reversed().map { rank -> (Int, Child) in
            let env: [String: String] = style == "torchrun"
                ? ["MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "3", "RANK": String(rank), "LOCAL_RANK": "0"]
                : ["SLURM_JOB_NODELIST": "localhost,node[02-03]", "ZEROTRAIN_PORT": port, "SLURM_NTASKS": "3", "SLURM_PROCID": String(rank),
                   "SLURM_LOCALID": "0", "SLURMD_NODENAME": "127.0.0.1"]
            let child = try Child(["worker"], environment: env, log: root.appendingPathComponent("worker-\(rank).log"))
            usleep(100_000)   // registration order: 2, 1, 0
            return (rank, child)
        }
        #expect(coordinator.wait(120) == 0, "\(coordinator.output)")
        for (rank, w) in workers {
            #expect(w.wait(30) == 0, "\(w.output)")
            #expect(w.output.contains(": ranks \(rank) of 3"), "worker with launch rank \(rank): \(w.output)")
            #expect(w.output.contains(style == "torchrun" ? "coordinator from MASTER_ADDR/MASTER_PORT" : "coordinator from the first node of SLURM_JOB_NODELIST"))
        }
        #expect(Self.records(run) == 8)
    }

    /// The daemons' systemd notifications, received on notify sockets the test listens on (one
    /// path socket, one abstract), with a watchdog of 0.2 s.
    @Test func daemonsNotifySystemd() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = root.appendingPathComponent("job.yaml"), run = root.appendingPathComponent("run")
        try CLI.write(Self.config, to: config)
        let coordinatorSocket = try NotifySocket(path: root.appendingPathComponent("notify.sock").path)
        let workerSocket = try NotifySocket(path: "@zerotrain-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let coordinator = try Child(["coordinator", "--config", config.path, "--listen", "tcp://127.0.0.1:*", "--run-dir", run.path, "--workers", "1"],
                                    environment: ["NOTIFY_SOCKET": coordinatorSocket.path, "WATCHDOG_USEC": "200000"],
                                    log: root.appendingPathComponent("c.log"))
        let endpointFile = run.appendingPathComponent("coordinator.endpoint")
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: endpointFile.path) && Date() < deadline && coordinator.process.isRunning { usleep(20_000) }
        let endpoint = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let worker = try Child(["worker"], environment: ["ZEROTRAIN_COORDINATOR": endpoint, "NOTIFY_SOCKET": workerSocket.path, "WATCHDOG_USEC": "200000"],
                               log: root.appendingPathComponent("w.log"))
        #expect(coordinator.wait(120) == 0, "\(coordinator.output)")
        #expect(worker.wait(30) == 0, "\(worker.output)")
        for (name, socket) in [("coordinator", coordinatorSocket), ("worker", workerSocket)] {
            let lines = socket.drain().flatMap { $0.split(separator: "\n").map(String.init) }
            #expect(lines.first == "READY=1", "\(name): \(lines.prefix(3))")
            #expect(lines.contains { $0.hasPrefix("STATUS=step 8") && $0.contains(" loss ") }, "\(name): \(lines)")
            #expect(lines.contains("WATCHDOG=1"), "\(name)")
            #expect(lines.contains("STOPPING=1"), "\(name)")
            #expect(lines.firstIndex(of: "STOPPING=1")! > lines.lastIndex { $0.hasPrefix("STATUS=step") }!, "\(name)")
        }
    }
}

/// An AF_UNIX datagram socket bound at a path or (leading `@`) an abstract name: systemd's side
/// of sd_notify. A thread of its own receives every datagram as it arrives.
final class NotifySocket: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let received = Monitor<[String]>([])
    private let done = Monitor(false)

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &a.sun_path) { d in for (i, b) in bytes.enumerated() { d[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == 0 ? 0 : 1))
        let bound = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard fd >= 0, bound == 0 else { throw POSIXError(.EADDRINUSE) }
        // Wake every 50 ms to notice the end.
        var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let socketFD = fd, received = self.received, done = self.done
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !done.withLock({ $0 }) {
                let n = recv(socketFD, &buffer, buffer.count, 0)
                if n > 0 { let text = String(decoding: buffer[0..<n], as: UTF8.self); received.withLock { $0.append(text) } }
            }
            done.withLock { $0 = false }
        }
        thread.start()
    }

    /// Every datagram received so far.
    func drain() -> [String] { received.withLock { $0 } }

    deinit {
        done.withLock { $0 = true }
        done.wait { $0 ? nil : true }
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }
}
