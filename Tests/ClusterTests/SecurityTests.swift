import Common
import CommZMQ
import Foundation
import Testing
import ZeroTrainTestKit

/// CURVE on both planes with real daemons, sockets and keys from `zerotrain keygen`: intruders are
/// refused and logged, and a job under attack (intruders, then a fuzzer) trains exactly the losses
/// of the same job left alone, in bounded memory. docs/security.md.
@Suite(.serialized) struct SecurityTests {
    /// A coordinator and two workers with keys; one directory per test.
    struct Cluster {
        let root: URL
        let config: URL
        /// name → (secret key file, public key)
        var keys: [String: (secret: String, publicKey: String)] = [:]

        /// Keys configured (else the daemons run without, on loopback).
        let secure: Bool

        init(steps: Int, allowed: [String], secure: Bool = true) throws {
            self.secure = secure
            root = CLI.tempDir()
            config = root.appendingPathComponent("c.yaml")
            for name in ["coordinator", "worker-0", "worker-1", "intruder", "spare", "fuzzer"] {
                let r = try CLI.run(["keygen", "--out", root.appendingPathComponent("keys").path, "--name", name])
                try #require(r.status == 0, "keygen: \(r.stderr)")
                let pub = try String(contentsOf: root.appendingPathComponent("keys/\(name).pub"), encoding: .utf8)
                    .split(separator: "\n").first { !$0.hasPrefix("#") }.map(String.init) ?? ""
                keys[name] = (root.appendingPathComponent("keys/\(name).key").path, pub)
            }
            let list = "# workers of the test job\n" + allowed.map { "\(keys[$0]!.publicKey)   # \($0)" }.joined(separator: "\n") + "\n"
            try CLI.write(list, to: root.appendingPathComponent("allowed"))
            try CLI.write(LocalClusterTests.config(accumulation: 1, steps: steps) + (secure ? """

                security: {allowed_workers: \(root.appendingPathComponent("allowed").path), coordinator_public_key: \(root.appendingPathComponent("keys/coordinator.pub").path), job_token: "job-7f3a"}
                """ : ""), to: config)
        }

        /// What one run left behind.
        struct Outcome {
            var status: Int32
            var losses: [Float]
            var coordinatorLog: String
            var workerLogs: [String]
            /// Peak resident set (VmHWM) of the coordinator and worker 0, in bytes.
            var peakBytes: (coordinator: Int, worker: Int)
        }

        /// Runs the job; `attack` gets the control endpoint, worker 0's ring endpoint and the run
        /// directory once training is under way, and runs while the job trains.
        func run(_ name: String, attack: (String, String, URL) throws -> Void = { _, _, _ in }) throws -> Outcome {
            let run = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
            func log(_ n: String) throws -> FileHandle {
                let url = run.appendingPathComponent(n)
                _ = FileManager.default.createFile(atPath: url.path, contents: nil)
                return try FileHandle(forWritingTo: url)
            }
            let coordinator = try CLI.start(["coordinator", "--config", config.path] + (secure ? ["--secret-key-file", keys["coordinator"]!.secret] : [])
                                            + ["--listen", "tcp://127.0.0.1:*", "--run-dir", run.path, "--workers", "2"],
                                            stdout: try log("coordinator.out"), stderr: try log("coordinator.err"))
            var processes = [coordinator]
            defer {
                for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
                for p in processes { p.waitUntilExit() }
            }
            let endpoint = try LocalClusterTests.coordinatorEndpoint(run)
            let workers = try (0..<2).map { i in
                try CLI.start(["worker", "--coordinator", endpoint, "--config", config.path] + (secure ? ["--secret-key-file", keys["worker-\(i)"]!.secret] : []),
                              stdout: try log("worker-\(i).out"), stderr: try log("worker-\(i).err"))
            }
            processes += workers
            let sampler = MemorySampler(pids: [coordinator.processIdentifier, workers[0].processIdentifier])
            LocalClusterTests.waitForTraining(run)
            let ring = try Self.ringEndpoint(run.appendingPathComponent("worker-0.out"))
            try attack(endpoint, ring, run)
            if !CLI.wait(for: processes, timeout: 90) { Issue.record("the job did not finish within 90 s") }
            let peaks = sampler.stop()
            let read = { (n: String) in (try? String(contentsOf: run.appendingPathComponent(n), encoding: .utf8)) ?? "" }
            for p in processes { p.waitUntilExit() }
            return Outcome(status: coordinator.terminationStatus, losses: (try? LocalClusterTests.losses(run)) ?? [],
                           coordinatorLog: read("coordinator.out") + read("coordinator.err"),
                           workerLogs: (0..<2).map { read("worker-\($0).out") + read("worker-\($0).err") },
                           peakBytes: (peaks[0], peaks[1]))
        }

        /// "ring link bound at tcp://127.0.0.1:PORT (CURVE)" in a worker's output.
        static func ringEndpoint(_ log: URL) throws -> String {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ring link bound at ") }) {
                    return String(line.dropFirst("ring link bound at ".count).split(separator: " ")[0])
                }
                usleep(20_000)
            }
            throw CLIFailure("worker 0 never said where its ring link is bound")
        }
    }

    struct CLIFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// Peak VmHWM of processes, read from /proc every 50 ms until `stop`.
    final class MemorySampler: @unchecked Sendable {  // peaks is guarded by lock
        private let lock = NSLock()
        private var peaks: [Int]
        private var running = true
        private let done = DispatchSemaphore(value: 0)

        init(pids: [Int32]) {
            peaks = Array(repeating: 0, count: pids.count)
            let thread = Thread { [self] in
                while lock.withLock({ running }) {
                    for (i, pid) in pids.enumerated() {
                        let hwm = Self.vmHWM(pid)
                        lock.withLock { peaks[i] = max(peaks[i], hwm) }
                    }
                    usleep(50_000)
                }
                done.signal()
            }
            thread.start()
        }

        func stop() -> [Int] {
            lock.withLock { running = false }
            done.wait()
            return lock.withLock { peaks }
        }

        /// VmHWM (peak resident set) in bytes, 0 when the process is gone.
        static func vmHWM(_ pid: Int32) -> Int {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
    }

    /// The intruders' results, collected from their threads.
    final class Collected: @unchecked Sendable {  // items is guarded by lock
        private let lock = NSLock()
        private var items: [(name: String, result: CLI.Result)] = []
        func add(_ name: String, _ r: CLI.Result) { lock.withLock { items.append((name, r)) } }
        var all: [(name: String, result: CLI.Result)] { lock.withLock { items } }
    }

    static func port(_ endpoint: String) -> Int { Int(endpoint.split(separator: ":").last ?? "") ?? 0 }

    /// Done-when of issue 13: a worker without an allowed key cannot register, a worker that pinned
    /// the wrong coordinator key cannot connect, a worker without keys cannot either, and a process
    /// that is not a ring member cannot inject into the ring (with or without CURVE). Each is
    /// refused and logged (peer address and key fingerprint), and the job trains the same losses
    /// as without them.
    @Test func intrudersAreRefusedLoggedAndTheJobIsUnaffected() throws {
        let cluster = try Cluster(steps: 400, allowed: ["worker-0", "worker-1", "spare"])
        defer { try? FileManager.default.removeItem(at: cluster.root) }
        let clean = try cluster.run("clean")
        try #require(clean.status == 0, "\(clean.coordinatorLog)")
        let keys = cluster.keys
        let collected = Collected()
        var injected: [Bool] = []
        let attacked = try cluster.run("attacked") { endpoint, ring, _ in
            let group = DispatchGroup()
            let attempts: [(String, [String])] = [
                ("unlisted key", ["--secret-key-file", keys["intruder"]!.secret, "--coordinator-key", keys["coordinator"]!.publicKey]),
                ("wrong coordinator key pinned", ["--secret-key-file", keys["spare"]!.secret, "--coordinator-key", keys["intruder"]!.publicKey]),
                ("no keys", []),
            ]
            for (name, args) in attempts {
                group.enter()
                Thread {
                    let r = try? CLI.run(["worker", "--coordinator", endpoint, "--connect-timeout", "2", "--job-token", "job-7f3a"] + args, timeout: 30)
                    if let r { collected.add(name, r) }
                    group.leave()
                }.start()
            }
            injected.append(try NetworkFuzzer.injectRing(endpoint: ring, serverKey: keys["worker-0"]!.publicKey, jobID: 0, seconds: 1))
            injected.append(try NetworkFuzzer.injectRing(endpoint: ring, serverKey: nil, jobID: 0, seconds: 1))
            group.wait()
        }
        #expect(attacked.status == 0, "\(attacked.coordinatorLog)")
        #expect(attacked.losses == clean.losses, "the attacked job trained other losses")
        #expect(attacked.losses.count == 400)
        #expect(clean.losses.count == 400)
        let intruders = collected.all
        #expect(intruders.count == 3)
        for (name, r) in intruders {
            #expect(r.status == 1 && (r.stdout + r.stderr).contains("no coordinator answered")
                    && ((r.stdout + r.stderr).contains("no CURVE handshake completed") || name == "no keys"),
                    "\(name): exit \(r.status): \(r.stdout) \(r.stderr)")
        }
        let log = attacked.coordinatorLog
        let fingerprint = String(keys["intruder"]!.publicKey.prefix(12))
        #expect(log.contains("security: zerotrain-control: refused a connection from 127.0.0.1, key \(fingerprint)…: the key is not allowed"), "\(log)")
        #expect(log.contains("security: control: refused a connection from 127.0.0.1:") && log.contains("the CURVE handshake did not decrypt"), "\(log)")
        #expect(log.contains("the handshake failed (a peer without CURVE") || log.contains("the peer does not speak CURVE"), "\(log)")
        #expect(!log.contains("joined: pid") || log.components(separatedBy: "joined: pid").count == 3, "only the two workers join")
        #expect(injected == [false, false], "a non-member delivered frames into the ring")
        #expect(attacked.workerLogs[0].contains("security: zerotrain-ring: refused a connection from 127.0.0.1, key "), "\(attacked.workerLogs[0])")
    }

    /// Raw TCP clients that send garbage to the coordinator's control port and to worker 0's ring
    /// port while the job trains: one that starts a ZMTP handshake and stalls it, then one that
    /// sends an HTTP request and random bytes. The first is logged once naming its address (the
    /// coordinator's log, worker 0's); the second is logged too where libzmq refuses it (with
    /// keys it resets a non-ZMTP greeting at once, so its address may be unknown; without keys it
    /// may take it for a ZMTP 1.0 peer, whose frames the ring's validation drops); the job's own
    /// connections are not reported, and it trains to its end.
    @Test(arguments: [false, true])
    func garbageIsLoggedOnceWithThePeersAddress(secure: Bool) throws {
        let steps = 400
        let cluster = try Cluster(steps: steps, allowed: ["worker-0", "worker-1"], secure: secure)
        defer { try? FileManager.default.removeItem(at: cluster.root) }
        var clients: [String?] = []
        let junk: [UInt8] = Array("GET / HTTP/1.1\r\nHost: zerotrain\r\n\r\n".utf8) + (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        let stalled = NetworkFuzzer.stalledHandshake(mechanism: secure ? "CURVE" : "NULL")
        let outcome = try cluster.run("garbage") { endpoint, ring, _ in
            // All four at once, as soon as training is under way: a quiet machine trains the tiny
            // job in about a second, and clients one after another (each lingers 0.3 s) could
            // reach a daemon that has already finished.
            let attacks = [(endpoint, stalled), (ring, stalled), (endpoint, junk), (ring, junk)]
            let addresses = Monitor([String?](repeating: nil, count: attacks.count))
            DispatchQueue.concurrentPerform(iterations: attacks.count) { i in
                let address = NetworkFuzzer.garbage(host: "127.0.0.1", port: Self.port(attacks[i].0), bytes: attacks[i].1)
                addresses.withLock { $0[i] = address }
            }
            clients = Array(addresses.withLock { $0 }.prefix(2))
        }
        #expect(outcome.status == 0, "\(outcome.coordinatorLog)")
        #expect(outcome.losses.count == steps)
        let control = try #require(clients[0]), ring = try #require(clients[1])
        let controlLines = outcome.coordinatorLog.split(separator: "\n").filter { $0.contains(control) }
        #expect(controlLines.count == 1 && controlLines.first?.hasPrefix("security: control: refused a connection from \(control): ") == true,
                "\(outcome.coordinatorLog)")
        let ringLines = outcome.workerLogs[0].split(separator: "\n").filter { $0.contains(ring) }
        #expect(ringLines.count == 1 && ringLines.first?.hasPrefix("security: ring: refused a connection from \(ring): ") == true,
                "\(outcome.workerLogs[0])")
        // At most one line per garbage client: the job's own connections are not reported.
        #expect((2...3).contains(outcome.coordinatorLog.components(separatedBy: "refused a connection").count), "\(outcome.coordinatorLog)")
        #expect((2...3).contains(outcome.workerLogs.joined().components(separatedBy: "refused a connection").count), "\(outcome.workerLogs)")
    }

    /// Seeded fuzzing while the job trains: thousands of random, truncated and bit-flipped frames
    /// on raw TCP to the coordinator's control port and worker 0's ring port, and mutated control
    /// messages from a peer whose key is allowed. The job finishes with the clean run's losses;
    /// the coordinator's and the worker's peak resident set stay within 64 MiB of the clean run's.
    @Test func fuzzedDaemonsTrainTheSameLossesInBoundedMemory() throws {
        // Long enough for the fuzzer to finish while the job trains, also on a loaded machine.
        let cluster = try Cluster(steps: 1200, allowed: ["worker-0", "worker-1", "fuzzer"])
        defer { try? FileManager.default.removeItem(at: cluster.root) }
        let clean = try cluster.run("clean")
        try #require(clean.status == 0, "\(clean.coordinatorLog)")
        let fuzzerKeys = try ZMQKeyFile.secret(at: cluster.keys["fuzzer"]!.secret)
        let coordinatorKey = cluster.keys["coordinator"]!.publicKey
        var reports: [NetworkFuzzer.Report] = []
        var controlSent = 0, controlError: String?
        let fuzzed = try cluster.run("fuzzed") { endpoint, ring, _ in
            // The three attacks at once, each with its own seeded fuzzer: one after another they
            // could outlast the job on a quiet machine and find a daemon that has already finished.
            let messages = { var f = NetworkFuzzer(seed: 13); return f.mutations(of: ControlProbe.register, count: 600) }()
            let results = Monitor((sent: 0, error: String?.none, reports: [NetworkFuzzer.Report]()))
            DispatchQueue.concurrentPerform(iterations: 3) { attack in
                switch attack {
                case 0:
                    do {
                        let sent = try NetworkFuzzer.sendControl(endpoint: endpoint, keys: fuzzerKeys, serverKey: coordinatorKey, messages: messages)
                        results.withLock { $0.sent = sent }
                    } catch { results.withLock { $0.error = "\(error)" } }
                default:
                    var fuzzer = NetworkFuzzer(seed: 13 + UInt64(attack))
                    let port = Self.port(attack == 1 ? endpoint : ring)
                    for _ in 0..<2 {
                        let report = fuzzer.raw(host: "127.0.0.1", port: port, count: 1000)
                        results.withLock { $0.reports.append(report) }
                    }
                }
            }
            let r = results.withLock { $0 }
            controlError = r.error
            controlSent = r.sent
            reports = r.reports
        }
        #expect(controlError == nil, "control fuzzing failed: \(controlError ?? "")")
        #expect(fuzzed.status == 0, "\(fuzzed.coordinatorLog)")
        #expect(fuzzed.losses == clean.losses && clean.losses.count == 1200, "the fuzzed job trained other losses")
        #expect(controlSent == 600)
        #expect(reports.reduce(0) { $0 + $1.frames } == 4000)
        #expect(reports.allSatisfy { $0.refused == 0 }, "a daemon stopped accepting connections (or the job ended) before the fuzzer was done: \(reports)")
        #expect(fuzzed.coordinatorLog.contains("security: ignored a control message from peer"), "\(fuzzed.coordinatorLog)")
        let bound = 64 << 20
        #expect(fuzzed.peakBytes.coordinator <= clean.peakBytes.coordinator + bound,
                "coordinator peak \(fuzzed.peakBytes.coordinator >> 20) MiB vs \(clean.peakBytes.coordinator >> 20) MiB clean")
        #expect(fuzzed.peakBytes.worker <= clean.peakBytes.worker + bound,
                "worker peak \(fuzzed.peakBytes.worker >> 20) MiB vs \(clean.peakBytes.worker >> 20) MiB clean")
        print("fuzzing: coordinator peak \(fuzzed.peakBytes.coordinator >> 20) MiB (clean \(clean.peakBytes.coordinator >> 20) MiB), worker \(fuzzed.peakBytes.worker >> 20) MiB (clean \(clean.peakBytes.worker >> 20) MiB); \(reports.reduce(0) { $0 + $1.connections }) connections")
    }
}

/// A real registration message (without the job token, so no mutation can join), the fuzzer's seed.
enum ControlProbe {
    static let register = Data(#"{"build":"zerotrain-0.1.0","devices":1,"endpoints":["tcp://127.0.0.1:4000"],"host":"fuzz","kind":"register","pid":1,"protocolVersion":2}"#.utf8)
}
