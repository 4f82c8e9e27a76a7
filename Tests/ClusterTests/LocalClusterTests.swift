import Foundation
import ZeroTrainTestKit
import Model
import Testing
import Training
import Zero

/// Real multi-process clusters on this host (`zerotrain local`, `coordinator`, `worker`).
@Suite(.serialized) struct LocalClusterTests {
    static func config(accumulation: Int, steps: Int = 20) -> String {
        """
        model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
        training: {lr: 0.003, warmup_steps: \(min(5, steps)), total_steps: \(steps), micro_batch_size: 2, gradient_accumulation_steps: \(accumulation), threads: 1, log_interval: 5}
        data: {seq_len: 32}
        cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000, divergence_check_interval: 5, bucket_mb: 0.01}
        """
    }

    /// Every metrics.jsonl record of a run, in order.
    static func records(_ runDir: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: runDir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    static func losses(_ runDir: URL) throws -> [Float] {
        try records(runDir).map { ($0["loss"] as! NSNumber).floatValue }
    }

    /// Processes of this test's run directory that are still alive.
    static func leftovers(_ dir: URL) -> [String] {
        let out = try? CLI.runTool("/usr/bin/pgrep", ["-af", "zerotrain"])
        return (out ?? "").split(separator: "\n").map(String.init).filter { $0.contains(dir.path) || $0.contains(dir.lastPathComponent) }
    }

    func local(_ root: URL, _ name: String, config: String, workers: Int, devices: Int = 1) throws -> (CLI.Result, URL) {
        let file = root.appendingPathComponent("\(name).yaml")
        try CLI.write(config, to: file)
        let run = root.appendingPathComponent(name)
        let r = try CLI.run(["local", "--config", file.path, "--workers", String(workers), "--devices", String(devices), "--run-dir", run.path])
        return (r, run)
    }

    /// A shipped config with 20 steps, the given accumulation and a divergence check every 5 steps,
    /// as JSON (which the YAML loader reads).
    static func shipped(_ name: String, accumulation: Int) throws -> String {
        let text = try String(contentsOf: CLI.repo.appendingPathComponent("configs/\(name)"), encoding: .utf8)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines = lines.map { line in
            if line.hasPrefix("  total_steps:") { return "  total_steps: 20" }
            if line.hasPrefix("  warmup_steps:") { return "  warmup_steps: 5" }
            if line.hasPrefix("  threads:") { return "  threads: 1" }
            if line.hasPrefix("  checkpoint_dir:") || line.hasPrefix("  checkpoint_interval:") { return "" }
            if line.hasPrefix("  gradient_accumulation_steps:") { return "" }
            if line.hasPrefix("training:") { return "training:\n  gradient_accumulation_steps: \(accumulation)" }
            return line
        }
        return lines.joined(separator: "\n") + "\ncluster: {divergence_check_interval: 5, bucket_mb: 0.05}\n"
    }

    @Test(arguments: ["tiny.yaml", "tiny-moe.yaml"])
    func nWorkersEqualOneWorkerWithAccumulation(config name: String) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (single, singleDir) = try local(root, "one", config: Self.shipped(name, accumulation: 6), workers: 1)
        #expect(single.status == 0, "\(single.stderr)")
        let reference = try Self.losses(singleDir)
        #expect(reference.count == 20)
        // Global batch 12 sequences everywhere: 1 rank × 6 micro-batches, 2 × 3, 3 × 2.
        let configName = name
        for (name, workers, accumulation) in [("two", 2, 3), ("three", 3, 2)] as [(String, Int, Int)] {
            let (r, dir) = try local(root, name, config: Self.shipped(configName, accumulation: accumulation), workers: workers)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let l = try Self.losses(dir)
            #expect(l.count == reference.count, "\(name)")
            for (x, y) in zip(l, reference) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(name): loss \(x) vs \(y)") }
            #expect(!r.stdout.contains("diverged"))
        }
        #expect(Self.leftovers(root).isEmpty)
    }

    @Test(arguments: ["tiny.yaml", "tiny-moe.yaml"])
    func twoWorkersTimesTwoDevicesEqualOneWorker(config name: String) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (single, singleDir) = try local(root, "one", config: Self.shipped(name, accumulation: 4), workers: 1)
        #expect(single.status == 0, "\(single.stderr)")
        let (r, dir) = try local(root, "twobytwo", config: Self.shipped(name, accumulation: 1), workers: 2, devices: 2)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("all 4 ranks ready on 2 worker(s)"))
        let (l, ref) = (try Self.losses(dir), try Self.losses(singleDir))
        #expect(l.count == 20 && ref.count == 20)
        for (x, y) in zip(l, ref) { #expect(abs(x - y) <= 1e-5 * abs(y), "loss \(x) vs \(y)") }
        #expect(!r.stdout.contains("diverged"))
        #expect(Self.leftovers(root).isEmpty)
    }

    /// ZeRO stages 1–3 compute the same updates as stage 0 and as one worker, and a checkpoint
    /// written by 1 worker resumes on 2 workers at stage 2, on 3 at stage 1 and on 2 at stage 3.
    @Test func zeroStagesEqualStageZeroAndResumeAcrossWorkerCounts() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        func config(_ accumulation: Int, stage: Int) throws -> String {
            try Self.shipped("tiny.yaml", accumulation: accumulation) + "zero: {stage: \(stage), param_persistence_threshold: 0}\n"
        }
        let oneText = try config(6, stage: 0).replacingOccurrences(of: "training:\n", with: "training:\n  checkpoint_interval: 10\n")
        let (one, oneDir) = try local(root, "one", config: oneText, workers: 1)
        #expect(one.status == 0, "\(one.stderr)")
        let reference = try Self.losses(oneDir)
        let psi = Double(ParameterTable(config: try TrainConfig.load(path: CLI.repo.appendingPathComponent("configs/tiny.yaml").path).model).count)
        let table = ParameterTable(config: try TrainConfig.load(path: CLI.repo.appendingPathComponent("configs/tiny.yaml").path).model)
        for (name, workers, accumulation, stage) in [("s0", 3, 2, 0), ("s1", 2, 3, 1), ("s2", 3, 2, 2), ("s3", 2, 3, 3)] as [(String, Int, Int, Int)] {
            let (r, dir) = try local(root, name, config: try config(accumulation, stage: stage), workers: workers)
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let l = try Self.losses(dir)
            #expect(l.count == 20)
            for (x, y) in zip(l, reference) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(name): loss \(x) vs \(y)") }
            // Communication accounting, fp32 elements per rank per step: 2Ψ(N−1)/N at stages 0–1
            // (all-reduce, or reduce-scatter + all-gather); stages 2–3 reduce-scatter every
            // micro-batch (A·Ψ(N−1)/N); stage 2 all-gathers Ψ(N−1)/N after the update, stage 3
            // gathers every region before forward and every block again before backward.
            let last = try Self.records(dir).last!
            let perRank = last["bytes_sent_per_rank"] as! [[String: Int]]
            #expect(perRank.count == workers)
            let blocks = Double(table.regions.dropFirst().dropLast().map(\.count).reduce(0, +))
            let a = Double(accumulation), share = Double(workers - 1) / Double(workers)
            let elements = [2 * psi, 2 * psi, (a + 1) * psi, a * (2 * psi + blocks)][stage]
            let expected = elements * share * 4
            let mean = perRank.map { Double($0.filter { $0.key != "allReduceScalars" }.values.reduce(0, +)) }.reduce(0, +) / Double(workers)
            #expect(abs(mean - expected) <= 0.01 * expected, "\(name): \(perRank) vs \(expected) bytes")
        }
        let checkpoint = oneDir.appendingPathComponent("checkpoints/step-00000010")
        for (name, workers, accumulation, stage) in [("r2", 2, 3, 2), ("r3", 3, 2, 1), ("r4", 2, 3, 3)] as [(String, Int, Int, Int)] {
            let file = root.appendingPathComponent("\(name).yaml")
            try CLI.write(try config(accumulation, stage: stage), to: file)
            let dir = root.appendingPathComponent(name)
            let r = try CLI.run(["local", "--config", file.path, "--workers", String(workers), "--run-dir", dir.path,
                                 "--resume", checkpoint.path])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let l = try Self.losses(dir)
            #expect(l.count == 10)
            for (x, y) in zip(l, reference[10...]) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(name) resumed: loss \(x) vs \(y)") }
        }
        // Stage 3 on 3 workers with the optimizer state and the parameter shards in the disk tier:
        // the same losses, and the memory-mapped files are gone when the job ends.
        let offload = root.appendingPathComponent("nvme")
        let diskText = try Self.shipped("tiny.yaml", accumulation: 2)
            + "zero: {stage: 3, offload_optimizer: disk, offload_params: disk, param_persistence_threshold: 0, offload_dir: \(offload.path)}\n"
        let (disk, diskDir) = try local(root, "s3disk", config: diskText, workers: 3)
        #expect(disk.status == 0, "\(disk.stderr)")
        let diskLosses = try Self.losses(diskDir)
        #expect(diskLosses.count == 20)
        for (x, y) in zip(diskLosses, reference) { #expect(abs(x - y) <= 1e-5 * abs(y), "disk offload: loss \(x) vs \(y)") }
        let diskLast = try Self.records(diskDir).last!
        for m in diskLast["memory_per_rank"] as! [[String: Any]] {
            let onDisk = (m["offloaded"] as! [String: [String: Int]])["disk"] ?? [:]
            #expect((onDisk["optimizer"] ?? 0) > 0 && (onDisk["params"] ?? 0) > 0, "\(onDisk)")
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: offload.path)) ?? []).isEmpty)
        #expect(Self.leftovers(root).isEmpty)
    }

    /// The MoE config at ZeRO stages 1–3 on 2 workers equals one worker with the same global batch.
    @Test(arguments: [1, 2, 3])
    func moeAtZeroStageEqualsOneWorker(stage: Int) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (one, oneDir) = try local(root, "one", config: try Self.shipped("tiny-moe.yaml", accumulation: 4), workers: 1)
        #expect(one.status == 0, "\(one.stderr)")
        let (r, dir) = try local(root, "two", config: try Self.shipped("tiny-moe.yaml", accumulation: 2) + "zero: {stage: \(stage), param_persistence_threshold: 0}\n", workers: 2)
        #expect(r.status == 0, "\(r.stderr)")
        let (l, ref) = (try Self.losses(dir), try Self.losses(oneDir))
        #expect(l.count == 20 && ref.count == 20)
        for (x, y) in zip(l, ref) { #expect(abs(x - y) <= 1e-5 * abs(y), "stage \(stage): loss \(x) vs \(y)") }
        #expect(!r.stdout.contains("diverged"))
    }

    /// A device budget that stages 0, 1 and 2 exceed (by the planner's estimate): stage 0 fails up
    /// front with the out-of-memory message; on the same budget, stage 3 with the optimizer
    /// offloaded to the host trains on 2 workers, its device ledger stays within the budget, its
    /// model states match 4Ψ/N + 4Ψ/N (parameter and gradient shards; the 8Ψ/N of AdamW moments are
    /// counted on the host), and the planner's estimate is within 10 % of the ledger's peak.
    @Test func deviceBudgetFailsStageZeroAndTrainsAtStageThree() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let base = try Self.shipped("tiny.yaml", accumulation: 2)
            .replacingOccurrences(of: "  micro_batch_size: 8", with: "  micro_batch_size: 1")
            .replacingOccurrences(of: "  seq_len: 64", with: "  seq_len: 16")
        let cfg = try TrainConfig.parse(text: base)
        let psi = ParameterTable(config: cfg.model).count, n = 2
        let plan = try MemoryPlanner.plan(PlannerInput(
            model: cfg.model, microBatchSize: cfg.training.microBatchSize, seqLen: cfg.data.seqLen, devices: n,
            deviceCapacity: 1 << 40, hostMemory: 1 << 40, bucketBytes: Int(cfg.cluster.bucketMB * 1_048_576),
            regionsGatheredAtOnce: cfg.zero.regionsGatheredAtOnce))
        let offloaded = plan.row(StageOption(stage: 3, optimizer: .host))!.device.total
        let budget = offloaded * 21 / 20
        for stage in [ZeroStage.replicated, .optimizerSharded, .gradientsSharded] { try #require(plan.row(StageOption(stage: stage))!.device.total > budget) }
        let device = "device: {profile: custom, memory: \(budget)}\n"
        let (fail, _) = try local(root, "stage0", config: base + device + "zero: {stage: 0}\n", workers: n)
        #expect(fail.status == 1)
        #expect(fail.stdout.contains("out of device memory on rank") && fail.stdout.contains("top consumers: "), "\(fail.stdout)\n\(fail.stderr)")
        #expect(fail.stdout.contains("zero.stage 1 or 2 shards the optimizer state"))
        let zero = "zero: {stage: 3, offload_optimizer: host, param_persistence_threshold: 0}\n"
        let (ok, dir) = try local(root, "stage3", config: base + device + zero, workers: n)
        #expect(ok.status == 0, "\(ok.stderr)")
        let last = try Self.records(dir).last!
        let memory = last["memory_per_rank"] as! [[String: Any]]
        #expect(memory.count == n)
        for m in memory {
            let peak = m["peak"] as! [String: Int]
            let states = (peak["params"] ?? 0) + (peak["grads"] ?? 0) + (peak["optimizer"] ?? 0)
            let formula = 8.0 * Double(psi) / Double(n)
            #expect(abs(Double(states) - formula) <= 0.05 * formula, "device model states \(states) vs 8Ψ/N = \(formula)")
            let host = (m["offloaded"] as! [String: [String: Int]])["host"] ?? [:]
            let hostOptimizer = Double(host["optimizer"] ?? 0), moments = 8.0 * Double(psi) / Double(n)
            #expect(abs(hostOptimizer - moments) <= 0.05 * moments, "\(host)")
            let total = m["peak_total"] as! Int
            #expect(total <= budget)
            #expect(Double(abs(offloaded - total)) <= 0.10 * Double(total), "planner \(offloaded) vs ledger \(total)")
        }
        #expect(Self.leftovers(root).isEmpty)
    }

    @Test func workersMayStartBeforeTheCoordinator() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config(accumulation: 1, steps: 5), to: root.appendingPathComponent("c.yaml"))
        let port = 20_000 + Int(getpid() % 20_000)
        let endpoint = "tcp://127.0.0.1:\(port)"
        let w1 = try CLI.start(["worker", "--coordinator", endpoint, "--connect-timeout", "30"])
        let w2 = try CLI.start(["worker", "--coordinator", endpoint, "--connect-timeout", "30"])
        defer { for p in [w1, w2] where p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        usleep(1_500_000)
        #expect(w1.isRunning && w2.isRunning)
        let c = try CLI.run(["coordinator", "--config", root.appendingPathComponent("c.yaml").path, "--listen", endpoint,
                             "--run-dir", root.appendingPathComponent("run").path, "--workers", "2"], timeout: 60)
        #expect(c.status == 0, "\(c.stderr)")
        #expect(c.stdout.contains("finished 5 steps"))
        w1.waitUntilExit(); w2.waitUntilExit()
        #expect(w1.terminationStatus == 0 && w2.terminationStatus == 0)
    }

    @Test func coordinatorThatNeverComes() throws {
        let start = Date()
        let r = try CLI.run(["worker", "--coordinator", "tcp://127.0.0.1:9", "--connect-timeout", "2"], timeout: 30)
        #expect(r.status == 1)
        #expect(r.stderr.contains("no coordinator answered at tcp://127.0.0.1:9 within 2 s"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func mismatchedConfigOrVersionIsRefused() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config(accumulation: 1, steps: 3), to: root.appendingPathComponent("c.yaml"))
        try CLI.write(Self.config(accumulation: 2, steps: 3), to: root.appendingPathComponent("other.yaml"))
        let coordinator = try CLI.start(["coordinator", "--config", root.appendingPathComponent("c.yaml").path,
                                         "--listen", "tcp://127.0.0.1:*", "--run-dir", root.appendingPathComponent("run").path, "--workers", "1"])
        defer { if coordinator.isRunning { kill(coordinator.processIdentifier, SIGKILL) }; coordinator.waitUntilExit() }
        let endpoint = try Self.coordinatorEndpoint(root.appendingPathComponent("run"))
        let wrongConfig = try CLI.run(["worker", "--coordinator", endpoint, "--config", root.appendingPathComponent("other.yaml").path], timeout: 30)
        #expect(wrongConfig.status == 2)
        #expect(wrongConfig.stderr.contains("the coordinator refused this worker: config hash"), "\(wrongConfig.stderr)")
        let wrongVersion = try CLI.run(["worker", "--coordinator", endpoint, "--protocol-version", "7"], timeout: 30)
        #expect(wrongVersion.status == 2)
        #expect(wrongVersion.stderr.contains("protocol version 7 differs"), "\(wrongVersion.stderr)")
        let wrongWorld = try CLI.run(["worker", "--coordinator", endpoint, "--world-size", "3"], timeout: 30)
        #expect(wrongWorld.status == 2)
        #expect(wrongWorld.stderr.contains("world size 3"), "\(wrongWorld.stderr)")
        // The right worker still gets in and the job completes.
        let good = try CLI.run(["worker", "--coordinator", endpoint, "--config", root.appendingPathComponent("c.yaml").path], timeout: 60)
        #expect(good.status == 0, "\(good.stderr)")
    }

    /// `--stop-after-step N`: the job checkpoints update N and exits 0, paused; `--resume auto`
    /// continues it, and the paused-and-resumed run's losses equal an uninterrupted run's, bit
    /// for bit (the path the sweep's successive halving takes at every rung).
    @Test func pausedAtAStepAndResumedEqualsAnUninterruptedRun() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("c.yaml")
        try CLI.write(Self.config(accumulation: 1, steps: 12), to: file)
        let whole = root.appendingPathComponent("whole"), paused = root.appendingPathComponent("paused")
        let w = try CLI.run(["local", "--config", file.path, "--workers", "2", "--run-dir", whole.path])
        #expect(w.status == 0, "\(w.stderr)")
        let first = try CLI.run(["local", "--config", file.path, "--workers", "2", "--run-dir", paused.path, "--stop-after-step", "5"])
        #expect(first.status == 0, "\(first.stdout)\n\(first.stderr)")
        #expect(first.stdout.contains("paused at step 5 of 12"), "\(first.stdout)")
        #expect(try Self.records(paused).map { $0["step"] as! Int } == Array(0..<5))
        let latest = try String(contentsOf: paused.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
        #expect(latest.hasPrefix("step-00000005"), "\(latest)")
        let rest = try CLI.run(["local", "--config", file.path, "--workers", "2", "--run-dir", paused.path, "--resume", "auto"])
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(try Self.records(paused).map { $0["step"] as! Int } == Array(0..<12))
        #expect(try Self.losses(paused) == Self.losses(whole))
        let bad = try CLI.run(["local", "--config", file.path, "--run-dir", paused.path, "--stop-after-step", "0"])
        #expect(bad.status == 2 && bad.stderr == "zerotrain: error: --stop-after-step must be ≥ 1, got 0\n", "\(bad.status) \(bad.stderr)")
        #expect(Self.leftovers(root).isEmpty)
    }

    @Test func sigtermStopsTheWholeLocalClusterWithACheckpoint() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config(accumulation: 1, steps: 100_000), to: root.appendingPathComponent("c.yaml"))
        let run = root.appendingPathComponent("run")
        let p = try CLI.start(["local", "--config", root.appendingPathComponent("c.yaml").path, "--workers", "2", "--run-dir", run.path])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        Self.waitForTraining(run)
        kill(p.processIdentifier, SIGTERM)
        CLI.wait(for: [p], timeout: 30)
        #expect(!p.isRunning, "SIGTERM did not stop the cluster")
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        #expect(p.terminationStatus == 130)
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
        #expect(latest.hasPrefix("step-"))
        usleep(200_000)
        #expect(Self.leftovers(root).isEmpty, "left running: \(Self.leftovers(root))")
    }

    @Test func killedLauncherLeavesNoProcesses() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config(accumulation: 1, steps: 100_000), to: root.appendingPathComponent("c.yaml"))
        let run = root.appendingPathComponent("run")
        let p = try CLI.start(["local", "--config", root.appendingPathComponent("c.yaml").path, "--workers", "2", "--run-dir", run.path])
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: run.appendingPathComponent("metrics.jsonl").path) && Date() < deadline { usleep(20_000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let gone = Date().addingTimeInterval(10)
        while !Self.leftovers(root).isEmpty && Date() < gone { usleep(50_000) }
        #expect(Self.leftovers(root).isEmpty, "left running: \(Self.leftovers(root))")
    }

    @Test func divergenceGuardStopsTheJob() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config(accumulation: 1, steps: 20), to: root.appendingPathComponent("c.yaml"))
        let endpoint = "tcp://127.0.0.1:\(21_000 + Int(getpid() % 20_000))"
        // Rank 1 of this worker perturbs one parameter after step 3 (1-based); the guard compares at step 5.
        let testWorker: URL = try #require(TestWorker.executable())
        let w = try CLI.start(["--coordinator", endpoint, "--devices", "2", "--inject-divergence-at", "2"], executable: testWorker)
        defer { if w.isRunning { kill(w.processIdentifier, SIGKILL) } }
        let c = try CLI.run(["coordinator", "--config", root.appendingPathComponent("c.yaml").path, "--listen", endpoint,
                             "--run-dir", root.appendingPathComponent("run").path, "--workers", "1"], timeout: 60)
        w.waitUntilExit()
        #expect(c.status == 1)
        #expect(c.stdout.contains("parameters diverged after step 5: rank 1 differs from rank 0, first in model.layers."), "\(c.stdout)")
        #expect(w.terminationStatus == 0)
    }

    /// The endpoint a coordinator started with run directory `run` listens on, once it wrote it.
    static func coordinatorEndpoint(_ run: URL) throws -> String {
        let endpointFile = run.appendingPathComponent("coordinator.endpoint")
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: endpointFile.path) && Date() < deadline { usleep(10_000) }
        return try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Returns once the job in `run` has logged a few steps (or after a minute).
    static func waitForTraining(_ run: URL) {
        let metrics = run.appendingPathComponent("metrics.jsonl")
        let deadline = Date().addingTimeInterval(60)
        while ((try? String(contentsOf: metrics, encoding: .utf8))?.count ?? 0) < 100 && Date() < deadline { usleep(20_000) }
    }

    /// A coordinator and two workers as separate daemons; returns them once training is under way.
    func startDaemons(_ root: URL, stdout coordinatorOut: URL, extra: String = "") throws -> (coordinator: Process, workers: [Process], run: URL) {
        try CLI.write(Self.config(accumulation: 1, steps: 100_000) + extra, to: root.appendingPathComponent("c.yaml"))
        let run = root.appendingPathComponent("run")
        _ = FileManager.default.createFile(atPath: coordinatorOut.path, contents: nil)
        let coordinator = try CLI.start(["coordinator", "--config", root.appendingPathComponent("c.yaml").path, "--listen", "tcp://127.0.0.1:*",
                                         "--run-dir", run.path, "--workers", "2"], stdout: try FileHandle(forWritingTo: coordinatorOut))
        let endpoint = try Self.coordinatorEndpoint(run)
        let workers = try (0..<2).map { _ in try CLI.start(["worker", "--coordinator", endpoint]) }
        Self.waitForTraining(run)
        return (coordinator, workers, run)
    }

    func waitForExit(_ processes: [Process], seconds: Double = 30) {
        if !CLI.wait(for: processes, timeout: seconds) {
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        for p in processes { p.waitUntilExit() }
    }

    /// SIGINT to a coordinator (its service's graceful shutdown): the step finishes, a checkpoint
    /// is written, the workers are shut down and exit 0, the coordinator exits 130.
    @Test func sigintStopsACoordinatorWithACheckpoint() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (coordinator, workers, run) = try startDaemons(root, stdout: root.appendingPathComponent("coordinator.out"))
        kill(coordinator.processIdentifier, SIGINT)
        waitForExit([coordinator] + workers)
        #expect(coordinator.terminationReason == .exit && coordinator.terminationStatus == 130)
        #expect(workers.allSatisfy { $0.terminationReason == .exit && $0.terminationStatus == 0 }, "\(workers.map(\.terminationStatus))")
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
        #expect(latest.hasPrefix("step-"))
    }

    /// SIGTERM to a worker (its service's graceful shutdown): it tells the coordinator it is
    /// leaving and exits 130; under `fault_tolerance.policy: stop` the coordinator ends the job at
    /// once (exit 1) naming why, and the other worker is shut down cleanly. (Under restart it
    /// waits for the worker to come back: RecoveryTests.)
    @Test func sigtermToAWorkerEndsTheJobAtOnce() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("coordinator.out")
        let (coordinator, workers, _) = try startDaemons(root, stdout: out, extra: "\nfault_tolerance: {policy: stop}\n")
        let start = Date()
        kill(workers[1].processIdentifier, SIGTERM)
        waitForExit([coordinator] + workers)
        let elapsed = Date().timeIntervalSince(start)
        let text = try String(contentsOf: out, encoding: .utf8)
        #expect(elapsed < 5, "the job should end without waiting for a heartbeat timeout: \(text)")
        #expect(workers[1].terminationReason == .exit && workers[1].terminationStatus == 130)
        #expect(workers[0].terminationReason == .exit && workers[0].terminationStatus == 0)
        #expect(coordinator.terminationStatus == 1)
        #expect(text.contains("was stopped by a signal"), "\(text)")
    }

    /// Rank 1 stalls inside step 3: rank 0's collective times out after 2 s and it writes its
    /// flight recorder to run/forensics; the job fails, the worker exits with rank 1 still asleep,
    /// and `zerotrain trace` names rank 1 as missing from the collective and without a dump.
    @Test func traceNamesTheRankThatStalled() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write("""
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
            training: {lr: 0.003, total_steps: 20, micro_batch_size: 2, threads: 1}
            data: {seq_len: 32}
            cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 30000, collective_timeout_s: 2, divergence_check_interval: 0}
            fault_tolerance: {policy: stop}
            """, to: root.appendingPathComponent("c.yaml"))
        let run = root.appendingPathComponent("run")
        let endpoint = "tcp://127.0.0.1:\(22_000 + Int(getpid() % 20_000))"
        let testWorker: URL = try #require(TestWorker.executable())
        let w = try CLI.start(["--coordinator", endpoint, "--devices", "2", "--stall-at", "3"], executable: testWorker)
        defer { if w.isRunning { kill(w.processIdentifier, SIGKILL) } }
        let start = Date()
        let c = try CLI.run(["coordinator", "--config", root.appendingPathComponent("c.yaml").path, "--listen", endpoint,
                             "--run-dir", run.path, "--workers", "1"], timeout: 60)
        waitForExit([w], seconds: 10)
        #expect(c.status == 1, "\(c.stdout)")
        #expect(Date().timeIntervalSince(start) < 25)

        let dumps = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("forensics").path)
        #expect(dumps == ["rank-0.json"])
        let r = try CLI.run(["trace", run.path], timeout: 30)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("not all ranks joined; missing ranks: {1}; started by {0}, completed by {}"), "\(r.stdout)")
        #expect(r.stdout.contains("rank 1 wrote no dump: it died or was killed"), "\(r.stdout)")
        #expect(r.stdout.contains("rank 0: ") && r.stdout.contains("timeout"), "\(r.stdout)")
    }

    @Test func traceWithoutDumpsIsAnError() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let r = try CLI.run(["trace", root.path], timeout: 30)
        #expect(r.status == 2)
        #expect(r.stderr.contains("no flight-recorder dumps (rank-*.json)") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    }
}
