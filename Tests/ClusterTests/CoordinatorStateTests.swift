import Checkpoint
import Cluster
import Foundation
import Model
import Testing
import Training

/// The coordinator's protocol logic, driven by hand: no sockets, no clocks.
@Suite struct CoordinatorStateTests {
    static func config(workers: Int = 2, steps: Int = 3, checkpointDir: String? = nil) throws -> TrainConfig {
        var c = try TrainConfig.parse(text: "model: {num_layers: 1, hidden_size: 8, num_attention_heads: 2}")
        c.cluster.workers = workers
        c.cluster.divergenceCheckInterval = 1
        c.training.totalSteps = steps
        c.training.checkpointDir = checkpointDir
        return c
    }

    static func register(devices: Int = 1, hash: String? = nil, version: Int = ControlMessage.protocolVersion) -> ControlMessage {
        var m = ControlMessage(.register)
        m.protocolVersion = version
        m.build = ControlMessage.build
        m.devices = devices
        m.endpoints = (0..<devices).map { "tcp://w:\($0)" }
        m.configHash = hash
        return m
    }

    let a = Data([1]), b = Data([2]), c = Data([3])

    /// A worker's checkpoint_done: its ranks' shards of checkpoint `step` are written.
    static func shardsDone(step: Int, ranks: [Int], epoch: UInt64 = 1) -> ControlMessage {
        var m = ControlMessage(.checkpointDone)
        m.step = step
        m.epoch = epoch
        m.shards = ranks.map { WorkerStateTests.shard(step: step, rank: $0) }
        return m
    }

    func sends(_ actions: [CoordinatorState.Action]) -> [(Data, ControlMessage)] {
        actions.compactMap { if case let .send(to, m) = $0 { return (to, m) } else { return nil } }
    }

    @Test func refusesOtherProtocolBuildOrConfig() throws {
        var s = CoordinatorState(config: try Self.config(), configHash: "abc", jobID: 1, dataFiles: ["t"])
        let v = sends(s.event(.message(from: a, Self.register(version: 99), now: 0)))
        #expect(v.first?.1.kind == .refused && v.first!.1.reason!.contains("protocol version 99"))
        let h = sends(s.event(.message(from: a, Self.register(hash: "zzz"), now: 0)))
        #expect(h.first?.1.kind == .refused && h.first!.1.reason!.contains("config hash zzz"))
        #expect(s.workers.isEmpty)
    }

    @Test func assignsRanksWorkerMajorInARing() throws {
        var s = CoordinatorState(config: try Self.config(), configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = s.event(.message(from: a, Self.register(devices: 2), now: 0))
        let out = sends(s.event(.message(from: b, Self.register(devices: 1), now: 0)))
        #expect(out.count == 2)
        let first = out.first { $0.0 == a }!.1, second = out.first { $0.0 == b }!.1
        #expect(first.ranks == [0, 1] && second.ranks == [2] && first.worldSize == 3)
        // Rank r's successor is rank r+1's endpoint: worker a's device 1, then worker b, then back to a.
        #expect(first.successors == ["tcp://w:1", "tcp://w:0"] && second.successors == ["tcp://w:0"])
        // Every worker gets the same partition plan: 3 shards of the model's flat buffer.
        let plan = try #require(first.partitionPlan)
        #expect(second.partitionPlan == plan && plan.worldSize == 3)
        #expect(plan.totalCount == ParameterTable(config: try Self.config().model).count)
        #expect(plan.shardRange(0).lowerBound == 0 && plan.shardRange(2).upperBound == plan.totalCount)
        // A third worker stands by for the next membership (fault_tolerance.policy restart) …
        let late = sends(s.event(.message(from: c, Self.register(), now: 0)))
        #expect(late.isEmpty && s.standby.count == 1)
        // … and without fault tolerance it is refused: the job is full.
        var cfg = try Self.config()
        cfg.faultTolerance.policy = .stop
        var strict = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = strict.event(.message(from: a, Self.register(devices: 2), now: 0))
        _ = strict.event(.message(from: b, Self.register(devices: 1), now: 0))
        #expect(sends(strict.event(.message(from: c, Self.register(), now: 0))).first?.1.kind == .refused)
    }

    @Test func drivesStepsCheckpointsAndShutsDown() throws {
        var s = CoordinatorState(config: try Self.config(steps: 2, checkpointDir: "/ck"), configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = s.event(.message(from: a, Self.register(), now: 0))
        _ = s.event(.message(from: b, Self.register(), now: 0))
        _ = s.event(.message(from: a, ControlMessage(.ready), now: 0))
        let start = sends(s.event(.message(from: b, ControlMessage(.ready), now: 0)))
        #expect(start.map(\.1.kind) == [.step, .step] && start[0].1.step == 0)
        func done(_ step: Int, sums: [UInt64] = [1, 2]) -> ControlMessage {
            var m = ControlMessage(.stepDone)
            m.step = step
            m.metrics = StepMetrics(step: step, loss: 1, auxLoss: 0, lr: 0.1, gradNorm: 1, tokens: 8, seconds: 0.1)
            m.checksums = [sums]
            return m
        }
        #expect(s.event(.message(from: a, done(0), now: 1)).isEmpty)
        let next = s.event(.message(from: b, done(0), now: 1))
        #expect(next.contains { if case .record = $0 { return true }; return false })
        #expect(sends(next).map(\.1.step) == [1, 1])
        _ = s.event(.message(from: a, done(1), now: 2))
        let lastActions = s.event(.message(from: b, done(1), now: 2))
        let last = sends(lastActions)
        // The last step's checkpoint: every rank writes its shard; the job waits for the commit.
        #expect(last.map(\.1.kind) == [.checkpoint, .checkpoint] && last[0].1.directory == "/ck" && last[0].1.step == 2)
        #expect(lastActions.contains(.prepareCheckpoint(step: 2)))
        #expect(s.phase == .checkpointing)
        #expect(s.event(.message(from: b, Self.shardsDone(step: 2, ranks: [1]), now: 3)).isEmpty)
        let commit = s.event(.message(from: a, Self.shardsDone(step: 2, ranks: [0]), now: 3))
        guard case let .commit(step, _, shards)? = commit.first else { Issue.record("no commit: \(commit)"); return }
        #expect(step == 2 && Set(shards.map(\.rank)) == [0, 1])
        let shutdown = sends(s.event(.committed(step: 2, path: "/ck/step-00000002", error: nil, now: 3)))
        #expect(shutdown.map(\.1.kind) == [.shutdown, .shutdown])
        #expect(s.lastCheckpoint?.path == "/ck/step-00000002")
        _ = s.event(.message(from: a, ControlMessage(.bye), now: 3))
        let exit = s.event(.message(from: b, ControlMessage(.bye), now: 3))
        #expect(exit.last == .exit(code: 0, message: "finished 2 steps"))
    }

    /// Workers a and b registered and ready; step 0 ordered.
    func twoWorkersTraining(policy: FaultToleranceConfig.Policy = .restart) throws -> CoordinatorState {
        var cfg = try Self.config()
        cfg.faultTolerance.policy = policy
        var s = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"])
        for id in [a, b] { _ = s.event(.message(from: id, Self.register(), now: 0)) }
        for id in [a, b] { _ = s.event(.message(from: id, ControlMessage(.ready), now: 0)) }
        return s
    }

    @Test func divergenceNamesRanksAndTensor() throws {
        var s = try twoWorkersTraining()
        var d0 = ControlMessage(.stepDone), d1 = ControlMessage(.stepDone)
        d0.step = 0; d1.step = 0
        d0.checksums = [[1, 2, 3]]
        d1.checksums = [[1, 9, 3]]
        _ = s.event(.message(from: a, d0, now: 1))
        let out = s.event(.message(from: b, d1, now: 1))
        #expect(out.contains(.log("parameters diverged after step 1: rank 1 differs from rank 0, first in model.layers.0.input_layernorm.weight")))
        #expect(sends(out).allSatisfy { $0.1.kind == .shutdown })
    }

    @Test func silentWorkerFailsTheJobAfterTheTimeout() throws {
        var cfg = try Self.config()
        cfg.faultTolerance.policy = .stop
        cfg.cluster.heartbeatIntervalMs = 100
        cfg.cluster.heartbeatTimeoutMs = 1000
        var s = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = s.event(.message(from: a, Self.register(), now: 0))
        _ = s.event(.message(from: b, Self.register(), now: 0))
        let beats = sends(s.event(.tick(now: 0.5)))
        #expect(beats.map(\.1.kind) == [.heartbeat, .heartbeat])
        _ = s.event(.message(from: a, ControlMessage(.heartbeat), now: 1.0))
        let lost = s.event(.tick(now: 1.6))
        #expect(lost.contains { if case .log(let l) = $0 { return l.hasPrefix("lost worker") }; return false })
        #expect(sends(lost).map(\.0) == [a])
    }

    @Test func stopFinishesTheStepThenCheckpoints() throws {
        var s = CoordinatorState(config: try Self.config(workers: 1, steps: 100, checkpointDir: "/ck"), configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = s.event(.message(from: a, Self.register(), now: 0))
        _ = s.event(.message(from: a, ControlMessage(.ready), now: 0))
        _ = s.event(.stopRequested(now: 0.1))
        var d = ControlMessage(.stepDone)
        d.step = 0
        let out = sends(s.event(.message(from: a, d, now: 0.2)))
        #expect(out.map(\.1.kind) == [.checkpoint])
        #expect(s.event(.message(from: a, Self.shardsDone(step: 1, ranks: [0]), now: 0.3)).contains { if case .commit = $0 { return true }; return false })
        let end = sends(s.event(.committed(step: 1, path: "/ck/step-00000001", error: nil, now: 0.3)))
        #expect(end.map(\.1.kind) == [.shutdown])
        #expect(s.event(.message(from: a, ControlMessage(.bye), now: 0.4)).last == .exit(code: 130, message: "stopped at step 1"))
    }
}

extension CoordinatorStateTests {
    /// A pause step (`--stop-after-step`) checkpoints that update, waits for the commit and exits 0;
    /// a job that starts at or past it has nothing to run.
    @Test func pauseStepCheckpointsAndExitsZero() throws {
        var s = CoordinatorState(config: try Self.config(workers: 1, steps: 100, checkpointDir: "/ck"), configHash: "abc", jobID: 1,
                                 dataFiles: ["t"], pauseStep: 2)
        _ = s.event(.message(from: a, Self.register(), now: 0))
        _ = s.event(.message(from: a, ControlMessage(.ready), now: 0))
        var d = ControlMessage(.stepDone)
        d.step = 0
        #expect(sends(s.event(.message(from: a, d, now: 0.1))).map(\.1.kind) == [.step])
        d.step = 1
        let out = sends(s.event(.message(from: a, d, now: 0.2)))
        #expect(out.map(\.1.kind) == [.checkpoint] && out[0].1.step == 2 && s.phase == .checkpointing)
        _ = s.event(.message(from: a, Self.shardsDone(step: 2, ranks: [0]), now: 0.3))
        #expect(sends(s.event(.committed(step: 2, path: "/ck/step-00000002", error: nil, now: 0.3))).map(\.1.kind) == [.shutdown])
        #expect(s.event(.message(from: a, ControlMessage(.bye), now: 0.4)).last
                == .exit(code: 0, message: "paused at step 2 of 100 (--stop-after-step); --resume continues it"))

        var again = CoordinatorState(config: try Self.config(workers: 1, steps: 100, checkpointDir: "/ck"), configHash: "abc", jobID: 1,
                                     dataFiles: ["t"], startStep: 2, resumeFrom: "/ck/step-00000002", pauseStep: 2)
        _ = again.event(.message(from: a, Self.register(), now: 0))
        #expect(sends(again.event(.message(from: a, ControlMessage(.ready), now: 0))).map(\.1.kind) == [.shutdown])
        // At or past total_steps there is no pause: the job runs to its end.
        #expect(CoordinatorState(config: try Self.config(workers: 1, steps: 3), configHash: "abc", jobID: 1, dataFiles: ["t"], pauseStep: 3).pauseStep == nil)
    }
}

extension CoordinatorStateTests {
    /// The loop waits for messages until the earliest heartbeat to send or worker to declare
    /// lost, and no longer; with nobody registered it waits for messages only.
    @Test func nextDeadlineIsTheEarliestTimer() throws {
        var cfg = try Self.config()
        cfg.cluster.heartbeatIntervalMs = 100
        cfg.cluster.heartbeatTimeoutMs = 1000
        var s = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"])
        #expect(s.nextDeadline == nil)
        _ = s.event(.message(from: a, Self.register(), now: 5))
        _ = s.event(.tick(now: 5))   // the first heartbeat goes out at once
        #expect(s.nextDeadline == 5.1)
        _ = s.event(.tick(now: 5.1))
        #expect(abs(s.nextDeadline! - 5.2) < 1e-9)
    }
}

extension CoordinatorStateTests {
    /// A worker that reports a failure is not waited for: the others are shut down, and once they
    /// said bye the job exits 1 at once.
    @Test func aFailedWorkerIsNotWaitedFor() throws {
        var s = try twoWorkersTraining(policy: .stop)
        var failed = ControlMessage(.failed)
        failed.reason = "worker pid 7 on h was stopped by a signal"
        let out = s.event(.message(from: b, failed, now: 1))
        #expect(sends(out).map(\.0) == [a] && sends(out).allSatisfy { $0.1.kind == .shutdown })
        let exit = s.event(.message(from: a, ControlMessage(.bye), now: 1.1))
        guard case let .exit(code, message)? = exit.last else { Issue.record("no exit: \(exit)"); return }
        #expect(code == 1 && message.contains("was stopped by a signal"))
    }
}

extension CoordinatorStateTests {
    static func shardFailed(step: Int, epoch: UInt64 = 1) -> ControlMessage {
        var m = ControlMessage(.checkpointFailed)
        m.step = step
        m.epoch = epoch
        m.reason = "rank 0: cannot write /ck/step-00000002.tmp/shard-00000-of-00001.safetensors (cause: No space left on device)"
        return m
    }

    /// A checkpoint whose shard could not be written is abandoned with a warning and training goes
    /// on; a second one lost in a row stops the job (exit 1), naming the cause and the last checkpoint.
    @Test func aLostCheckpointIsAWarningThenASecondStopsTheJob() throws {
        var cfg = try Self.config(workers: 1, steps: 100, checkpointDir: "/ck")
        cfg.training.checkpointInterval = 2
        var s = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = s.event(.message(from: a, Self.register(), now: 0))
        _ = s.event(.message(from: a, ControlMessage(.ready), now: 0))
        func finishStep(_ step: Int) -> [CoordinatorState.Action] {
            var d = ControlMessage(.stepDone)
            d.step = step
            d.metrics = StepMetrics(step: step, loss: 1, auxLoss: 0, lr: 0.1, gradNorm: 1, tokens: 8, seconds: 0.1)
            return s.event(.message(from: a, d, now: Double(step)))
        }
        _ = finishStep(0)
        #expect(sends(finishStep(1)).map(\.1.kind) == [.checkpoint, .step])
        let lost = s.event(.message(from: a, Self.shardFailed(step: 2), now: 2))
        #expect(lost.contains(.abandonCheckpoint(step: 2)))
        #expect(lost.contains { if case .log(let l) = $0 { return l.hasPrefix("warning: cannot save the checkpoint of step 2") && l.contains("No space left") && l.contains("training goes on") }; return false })
        #expect(sends(lost).isEmpty && s.phase == .running)
        // A late report for the abandoned checkpoint changes nothing.
        #expect(s.event(.message(from: a, Self.shardsDone(step: 2, ranks: [0]), now: 2)).isEmpty)
        _ = finishStep(2)
        #expect(sends(finishStep(3)).map(\.1.kind) == [.checkpoint, .step])
        // The commit of step 4 fails too: the second in a row.
        _ = s.event(.message(from: a, Self.shardsDone(step: 4, ranks: [0]), now: 4))
        let stop = s.event(.committed(step: 4, path: nil, error: "cannot write /ck/step-00000004.tmp/manifest.json (No space left on device)", now: 4))
        #expect(stop.contains(.abandonCheckpoint(step: 4)))
        #expect(sends(stop).map(\.1.kind) == [.shutdown])
        let exit = s.event(.message(from: a, ControlMessage(.bye), now: 5))
        guard case let .exit(code, message)? = exit.last else { Issue.record("no exit: \(exit)"); return }
        #expect(code == 1 && message.contains("step 4") && message.contains("second checkpoint in a row") && message.contains("the last checkpoint is none"))
    }

    /// The job's last checkpoint (or SIGTERM's) cannot be done without: losing it stops the job.
    @Test func losingTheFinalCheckpointStopsTheJob() throws {
        var s = CoordinatorState(config: try Self.config(workers: 1, steps: 1, checkpointDir: "/ck"), configHash: "abc", jobID: 1, dataFiles: ["t"])
        _ = s.event(.message(from: a, Self.register(), now: 0))
        _ = s.event(.message(from: a, ControlMessage(.ready), now: 0))
        var d = ControlMessage(.stepDone)
        d.step = 0
        #expect(sends(s.event(.message(from: a, d, now: 1))).map(\.1.kind) == [.checkpoint])
        #expect(s.phase == .checkpointing)
        let stop = s.event(.message(from: a, Self.shardFailed(step: 1), now: 2))
        #expect(stop.contains(.abandonCheckpoint(step: 1)) && sends(stop).map(\.1.kind) == [.shutdown])
        guard case let .exit(code, message)? = s.event(.message(from: a, ControlMessage(.bye), now: 3)).last else { Issue.record("no exit"); return }
        #expect(code == 1 && message.contains("cannot finish without it"))
    }
}
