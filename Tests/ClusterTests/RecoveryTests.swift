import Foundation
import Testing
import ZeroTrainTestKit

/// Recovery with real processes (`zerotrain local`): workers and the coordinator killed with
/// SIGKILL while the job trains; it must finish with the losses of an uninterrupted run.
@Suite(.serialized) struct RecoveryTests {
    /// configs/tiny.yaml's model on 2 workers at ZeRO stage 2, with checkpoints every 20 steps and
    /// in-memory replicas every 5.
    static func config(steps: Int = 80, replicas: Int = 5, workers: Int = 2, transport: String = "auto") throws -> String {
        """
        model: {num_layers: 2, hidden_size: 64, num_attention_heads: 4, vocab_size: 256, max_seq_len: 128}
        training: {lr: 0.003, warmup_steps: 10, total_steps: \(steps), micro_batch_size: 4, threads: 1, checkpoint_interval: 20, log_interval: 10}
        data: {seq_len: 64}
        cluster: {workers: \(workers), heartbeat_interval_ms: 200, heartbeat_timeout_ms: 2000, collective_timeout_s: 5, divergence_check_interval: 0}
        zero: {stage: 2}
        fault_tolerance: {policy: restart, rejoin_timeout_s: 30, replica_interval: \(replicas), replica_transport: \(transport)}
        """
    }

    /// The last record of every step (a step redone after a recovery is logged again; the last wins).
    static func losses(_ run: URL) throws -> [Int: Float] {
        var out: [Int: Float] = [:]
        for record in try LocalClusterTests.records(run) {
            out[(record["step"] as! NSNumber).intValue] = (record["loss"] as! NSNumber).floatValue
        }
        return out
    }

    static func lineCount(_ run: URL) -> Int {
        ((try? String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    static func lastStep(_ run: URL) -> Int {
        (try? LocalClusterTests.records(run).last.map { ($0["step"] as! NSNumber).intValue }) ?? nil ?? -1
    }

    /// The pids of the launcher's children running `role` (coordinator or worker).
    static func children(of launcher: Process, role: String) -> [Int32] {
        let out = (try? CLI.runTool("/usr/bin/pgrep", ["-P", String(launcher.processIdentifier)])) ?? ""
        return out.split(separator: "\n").compactMap { Int32($0) }.filter { pid in
            let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
            return String(decoding: cmdline, as: UTF8.self).split(separator: "\0").dropFirst().first == Substring(role)
        }
    }

    static func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            if Date() > deadline { return false }
            usleep(10_000)
        }
        return true
    }

    func reference(_ root: URL, config: String) throws -> [Int: Float] {
        let file = root.appendingPathComponent("reference.yaml")
        try CLI.write(config, to: file)
        let run = root.appendingPathComponent("reference")
        let r = try CLI.run(["local", "--config", file.path, "--workers", "2", "--run-dir", run.path])
        #expect(r.status == 0, "\(r.stderr)")
        return try Self.losses(run)
    }

    /// Starts the job, waits until it reached `step`, and runs `kill` on the launcher.
    func chaos(_ root: URL, config: String, atStep step: Int, then act: (Process, URL) -> Void) throws -> (status: Int32, run: URL, output: String) {
        let file = root.appendingPathComponent("chaos.yaml")
        try CLI.write(config, to: file)
        let run = root.appendingPathComponent("chaos")
        let log = root.appendingPathComponent("chaos.out")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let p = try CLI.start(["local", "--config", file.path, "--workers", "2", "--run-dir", run.path], stdout: handle, stderr: handle)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        #expect(Self.waitUntil(60) { Self.lastStep(run) >= step }, "the job did not reach step \(step)")
        act(p, run)
        #expect(CLI.wait(for: [p], timeout: 90), "the job did not finish after the kill")
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return (p.terminationStatus, run, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    /// One worker killed: the survivor and a replacement restore the newest replica generation
    /// from memory (no checkpoint file read), and every step's loss equals the uninterrupted run's —
    /// with the replicas in shared memory (the local workers are on one host: auto) and sent over the ring.
    @Test(arguments: ["auto", "network"]) func aKilledWorkerIsRecoveredFromInMemoryReplicas(transport: String) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = try Self.config(transport: transport)
        let expected = try reference(root, config: config)
        #expect(expected.count == 80)
        var killedAt = Date(), linesAtKill = 0, recoverySeconds = -1.0, pids: [Int32] = []
        let (status, run, output) = try chaos(root, config: config, atStep: 27) { launcher, run in
            let workers = Self.children(of: launcher, role: "worker")
            pids = workers
            #expect(workers.count == 2)
            killedAt = Date()
            kill(workers[1], SIGKILL)
            // The first step completed once the new membership is assigned (conservative: a step
            // that ends between the assignment and the line count is not counted).
            let log = root.appendingPathComponent("chaos.out")
            guard Self.waitUntil(30, { ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("assigned 2 ranks (membership 2)") }) else { return }
            linesAtKill = Self.lineCount(run)
            if Self.waitUntil(30, { Self.lineCount(run) > linesAtKill }) { recoverySeconds = Date().timeIntervalSince(killedAt) }
        }
        #expect(status == 0, "\(output)")
        #expect(output.contains("from the workers' in-memory replicas, no checkpoint file read"), "\(output)")
        #expect(output.contains("starting a replacement"), "\(output)")
        #expect(recoverySeconds >= 0 && recoverySeconds <= 5, "from the kill to the first step after recovery: \(recoverySeconds) s")
        print("recovery through replicas: \(String(format: "%.2f", recoverySeconds)) s from the SIGKILL to the first completed step")
        #expect(try Self.losses(run) == expected, "the losses differ from the uninterrupted run's")
        #expect(LocalClusterTests.leftovers(root).isEmpty)
        let workerLogs = ((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []).filter { $0.hasPrefix("worker-") }
            .map { (try? String(contentsOf: run.appendingPathComponent($0), encoding: .utf8)) ?? "" }.joined()
        #expect(!workerLogs.contains("no replica of rank"), "\(workerLogs)")
        #expect(workerLogs.contains("through shared memory") == (transport == "auto"), "\(workerLogs)")
        // No shared-memory slot of these workers is left behind, the killed one's included.
        let slots = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
        let left = slots.filter { name in pids.contains { name.hasPrefix("zerotrain-replica-\($0)-") } }
        #expect(left.isEmpty, "left in /dev/shm: \(left)")
    }

    /// Both workers killed at once: no replica survives, so the job restarts from the last checkpoint.
    @Test func withoutReplicasTheJobRestartsFromTheLastCheckpoint() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = try Self.config(steps: 60)
        let expected = try reference(root, config: config)
        let (status, run, output) = try chaos(root, config: config, atStep: 27) { launcher, _ in
            for w in Self.children(of: launcher, role: "worker") { kill(w, SIGKILL) }
        }
        #expect(status == 0, "\(output)")
        #expect(output.contains("restarts from") && output.contains("step-00000020 (step 20)"), "\(output)")
        #expect(try Self.losses(run) == expected, "the losses differ from the uninterrupted run's")
        #expect(LocalClusterTests.leftovers(root).isEmpty)
    }

    /// The coordinator killed: `zerotrain local` starts a new one (`--resume auto`), the workers
    /// register with it again, and the job continues from the newest consistent state.
    @Test func aKilledCoordinatorIsReplacedAndTheJobFinishes() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = try Self.config(steps: 60)
        let expected = try reference(root, config: config)
        let (status, run, output) = try chaos(root, config: config, atStep: 23) { launcher, _ in
            let coordinator = Self.children(of: launcher, role: "coordinator")
            #expect(coordinator.count == 1)
            for c in coordinator { kill(c, SIGKILL) }
        }
        #expect(status == 0, "\(output)")
        #expect(output.contains("the coordinator (pid") && output.contains("--resume auto: resuming from"), "\(output)")
        #expect(try Self.losses(run) == expected, "the losses differ from the uninterrupted run's")
        #expect(LocalClusterTests.leftovers(root).isEmpty)
    }

    /// `policy: elastic` with separate daemons (nobody restarts the dead worker): the job shrinks
    /// to the survivor with twice the accumulation — the global batch and sample order kept, so
    /// the losses stay within 1e-5 of the uninterrupted run — and grows back to 2 workers after a
    /// checkpoint when a new worker registers.
    @Test func elasticShrinksToTheSurvivorAndGrowsBack() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let config = try Self.config(steps: 100, replicas: 0).replacingOccurrences(of: "policy: restart, rejoin_timeout_s: 30", with: "policy: elastic, rejoin_timeout_s: 2")
            .replacingOccurrences(of: "micro_batch_size: 4,", with: "micro_batch_size: 2, gradient_accumulation_steps: 2,")
        let expected = try reference(root, config: config)
        let file = root.appendingPathComponent("elastic.yaml")
        try CLI.write(config, to: file)
        let run = root.appendingPathComponent("elastic")
        let out = root.appendingPathComponent("coordinator.out")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let coordinator = try CLI.start(["coordinator", "--config", file.path, "--listen", "tcp://127.0.0.1:*", "--run-dir", run.path],
                                        stdout: try FileHandle(forWritingTo: out))
        let endpoint = try LocalClusterTests.coordinatorEndpoint(run)
        var workers = try (0..<2).map { _ in try CLI.start(["worker", "--coordinator", endpoint]) }
        defer { for p in [coordinator] + workers where p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func log() -> String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
        #expect(Self.waitUntil(60) { Self.lastStep(run) >= 15 })
        kill(workers[1].processIdentifier, SIGKILL)
        #expect(Self.waitUntil(30) { log().contains("continuing on 1 worker(s)") }, "\(log())")
        #expect(log().contains("1 ranks × accumulation 4 keep the global batch of 8 sequences"), "\(log())")
        let shrunkAt = Self.lastStep(run)
        #expect(Self.waitUntil(60) { Self.lastStep(run) >= max(shrunkAt, 25) + 5 })
        workers.append(try CLI.start(["worker", "--coordinator", endpoint]))
        #expect(Self.waitUntil(60) { log().contains("standing by: growing the world") }, "\(log())")
        #expect(CLI.wait(for: [coordinator], timeout: 120), "\(log())")
        #expect(coordinator.terminationStatus == 0, "\(log())")
        #expect(log().components(separatedBy: "assigned 2 ranks").count == 3, "\(log())")   // the first membership and the grown one
        let got = try Self.losses(run)
        #expect(got.count == expected.count)
        for (step, loss) in expected { #expect(abs((got[step] ?? .nan) - loss) <= 1e-5 * abs(loss), "step \(step)") }
    }

    /// scripts/chaos.sh: 3 workers at stage 2, four SIGKILLs at random moments (one during a
    /// checkpoint write, one of the coordinator); losses, final weights and checkpoints checked.
    @Test func chaosScript() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let r = try CLI.runTool("/bin/bash", [CLI.repo.appendingPathComponent("scripts/chaos.sh").path, "--zerotrain", CLI.binary.path,
                                              "--config", CLI.repo.appendingPathComponent("configs/chaos.yaml").path,
                                              "--out", root.path, "--workers", "3", "--kills", "5", "--seed", "7"])
        #expect(r.contains("chaos: ok"), "\(r)")
        print(r.split(separator: "\n").last.map(String.init) ?? "")
    }
}
