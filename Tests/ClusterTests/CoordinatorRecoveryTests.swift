import Cluster
import Foundation
import Testing
import Training

/// The coordinator's recovery logic (fault_tolerance), driven by hand: no sockets, no clocks.
@Suite struct CoordinatorRecoveryTests {
    let a = Data([1]), b = Data([2]), c = Data([3])

    static func config(policy: FaultToleranceConfig.Policy = .restart, workers: Int = 2, steps: Int = 10, accumulation: Int = 2) throws -> TrainConfig {
        var cfg = try CoordinatorStateTests.config(workers: workers, steps: steps, checkpointDir: "/ck")
        cfg.faultTolerance.policy = policy
        cfg.faultTolerance.rejoinTimeoutSeconds = 5
        cfg.cluster.heartbeatIntervalMs = 100
        cfg.cluster.heartbeatTimeoutMs = 1000
        cfg.cluster.divergenceCheckInterval = 0
        cfg.training.checkpointInterval = 2
        cfg.training.gradientAccumulationSteps = accumulation
        return cfg
    }

    func sends(_ actions: [CoordinatorState.Action]) -> [(Data, ControlMessage)] {
        actions.compactMap { if case let .send(to, m) = $0 { return (to, m) } else { return nil } }
    }

    func logs(_ actions: [CoordinatorState.Action]) -> [String] {
        actions.compactMap { if case let .log(l) = $0 { return l } else { return nil } }
    }

    func done(_ step: Int, epoch: UInt64) -> ControlMessage {
        var m = ControlMessage(.stepDone)
        m.step = step
        m.epoch = epoch
        m.metrics = StepMetrics(step: step, loss: 1, auxLoss: 0, lr: 0.1, gradNorm: 1, tokens: 8, seconds: 0.1)
        return m
    }

    /// Workers `ids` registered and ready under `cfg`; at step 0.
    func training(_ cfg: TrainConfig, _ ids: [Data], now: Double = 0) -> CoordinatorState {
        var s = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"])
        for id in ids { _ = s.event(.message(from: id, CoordinatorStateTests.register(), now: now)) }
        for id in ids { _ = s.event(.message(from: id, ControlMessage(.ready), now: now)) }
        #expect(s.phase == .running)
        return s
    }

    /// Runs steps `from..<to` (with the checkpoints the interval asks for) on workers `ids`.
    func run(_ s: inout CoordinatorState, _ ids: [Data], steps: Range<Int>, epoch: UInt64, now: Double) {
        for step in steps {
            var out: [CoordinatorState.Action] = []
            for id in ids { out = s.event(.message(from: id, done(step, epoch: epoch), now: now)) }
            if sends(out).first?.1.kind == .checkpoint {
                // Shards written in the background, then the commit, while the next step runs.
                var commit: [CoordinatorState.Action] = []
                for (r, id) in ids.enumerated() {
                    commit = s.event(.message(from: id, CoordinatorStateTests.shardsDone(step: step + 1, ranks: [r], epoch: epoch), now: now))
                }
                #expect(commit.contains { if case .commit = $0 { return true }; return false })
                _ = s.event(.committed(step: step + 1, path: "/ck/step-\(step + 1)", error: nil, now: now))
            }
        }
    }

    @Test func aLostWorkerIsReplacedAndTheJobContinuesFromTheLastCheckpoint() throws {
        var s = training(try Self.config(), [a, b])
        run(&s, [a, b], steps: 0..<3, epoch: 1, now: 0.5)   // checkpoint after step 2 (index 1)
        #expect(s.lastCheckpoint?.step == 2 && s.step == 3)
        // b goes silent: after the heartbeat timeout the membership ends and a is told to reset.
        _ = s.event(.message(from: a, ControlMessage(.heartbeat), now: 1.2))
        let lost = s.event(.tick(now: 1.6))
        #expect(sends(lost).map(\.1.kind) == [.reset] && sends(lost)[0].0 == a && sends(lost)[0].1.epoch == 2)
        #expect(s.phase == .recovering && s.epoch == 2)
        #expect(logs(lost).contains { $0.contains("restarts from /ck/step-2 (step 2)") })
        // A late report of the aborted membership is ignored.
        #expect(s.event(.message(from: a, done(3, epoch: 1), now: 1.7)).isEmpty)
        // a registers again, and a replacement c: the next membership resumes at step 2.
        _ = s.event(.message(from: a, CoordinatorStateTests.register(), now: 2))
        let assigned = sends(s.event(.message(from: c, CoordinatorStateTests.register(), now: 2.1)))
        #expect(assigned.map(\.1.kind) == [.assign, .assign])
        #expect(assigned.allSatisfy { $0.1.epoch == 2 && $0.1.resumeFrom == "/ck/step-2" && $0.1.step == 2 })
        for id in [a, c] { _ = s.event(.message(from: id, ControlMessage(.ready), now: 2.2)) }
        #expect(s.phase == .running && s.step == 2)
    }

    @Test func aFailedDeviceEndsTheMembershipForEveryWorker() throws {
        var s = training(try Self.config(), [a, b])
        var failed = ControlMessage(.failed)
        failed.reason = "rank 0: the connection to rank 1 dropped"
        failed.epoch = 1
        let out = s.event(.message(from: a, failed, now: 1))
        // Both are alive: both reset (b may be the one whose process is gone; the send just fails).
        #expect(Set(sends(out).map(\.0)) == [a, b] && sends(out).allSatisfy { $0.1.kind == .reset })
        // The second survivor's report of the same loss does not start another recovery.
        #expect(s.event(.message(from: b, failed, now: 1.01)).isEmpty)
        #expect(s.epoch == 2 && s.recoveries.count == 1)
        // Nothing was checkpointed yet: the next membership starts from the initial state.
        _ = s.event(.message(from: a, CoordinatorStateTests.register(), now: 1.5))
        let assigned = sends(s.event(.message(from: b, CoordinatorStateTests.register(), now: 1.5)))
        #expect(assigned.allSatisfy { $0.1.kind == .assign && $0.1.resumeFrom == nil && $0.1.step == 0 })
    }

    @Test func withoutAReplacementRestartGivesUpAndElasticShrinks() throws {
        var stop = training(try Self.config(policy: .restart), [a, b])
        _ = stop.event(.message(from: a, ControlMessage(.heartbeat), now: 1.2))
        _ = stop.event(.tick(now: 1.6))   // b lost
        _ = stop.event(.message(from: a, CoordinatorStateTests.register(), now: 2))
        _ = stop.event(.message(from: a, ControlMessage(.heartbeat), now: 6))
        let gaveUp = stop.event(.tick(now: 6.7))
        #expect(logs(gaveUp).contains { $0.hasPrefix("no replacement worker registered within 5 s") })
        #expect(sends(gaveUp).map(\.1.kind) == [.shutdown])

        // elastic: the survivor continues alone with twice the accumulation (global batch 2 × 2 × 8 kept).
        var shrink = training(try Self.config(policy: .elastic), [a, b])
        _ = shrink.event(.message(from: a, ControlMessage(.heartbeat), now: 1.2))
        _ = shrink.event(.tick(now: 1.6))
        _ = shrink.event(.message(from: a, CoordinatorStateTests.register(), now: 2))
        _ = shrink.event(.message(from: a, ControlMessage(.heartbeat), now: 6))
        let alone = shrink.event(.tick(now: 6.7))
        let assigned = sends(alone)
        #expect(assigned.count == 1 && assigned[0].1.kind == .assign && assigned[0].1.worldSize == 1)
        #expect(assigned[0].1.config?.training.gradientAccumulationSteps == 4)
        #expect(logs(alone).contains("1 ranks × accumulation 4 keep the global batch of 32 sequences"))
    }

    @Test func elasticSaysWhenTheGlobalBatchCannotBeKept() throws {
        // 3 ranks × accumulation 1 × 8 = 24 sequences; 2 ranks cannot make 24 with micro-batch 8 … they can: 2 × ? = 3 — no.
        var s = training(try Self.config(policy: .elastic, workers: 3, accumulation: 1), [a, b, c])
        _ = s.event(.message(from: a, ControlMessage(.heartbeat), now: 1.2))
        _ = s.event(.message(from: b, ControlMessage(.heartbeat), now: 1.2))
        _ = s.event(.tick(now: 1.6))   // c lost
        for id in [a, b] { _ = s.event(.message(from: id, CoordinatorStateTests.register(), now: 2)) }
        for id in [a, b] { _ = s.event(.message(from: id, ControlMessage(.heartbeat), now: 6)) }
        let out = s.event(.tick(now: 6.7))
        #expect(logs(out).contains { $0.hasPrefix("the global batch changes from 24 to 32 sequences") })
    }

    @Test func aReplacementThatArrivesEarlyStandsByAndIsAdmittedAtOnce() throws {
        var s = training(try Self.config(), [a, b])
        let early = s.event(.message(from: c, CoordinatorStateTests.register(), now: 0.5))
        #expect(sends(early).isEmpty && s.standby.count == 1)
        var failed = ControlMessage(.failed)
        failed.epoch = 1
        failed.reason = "peer lost"
        _ = s.event(.message(from: a, ControlMessage(.heartbeat), now: 0.9))
        _ = s.event(.message(from: a, failed, now: 1))
        // c is already a member of the next membership; a registers again and the world is full.
        let assigned = sends(s.event(.message(from: a, CoordinatorStateTests.register(), now: 1.1)))
        #expect(Set(assigned.map(\.0)) == [a, c] && assigned.allSatisfy { $0.1.kind == .assign })
    }

    @Test func recoveriesBeyondMaxRestartsEndTheJob() throws {
        var cfg = try Self.config()
        cfg.faultTolerance.maxRestarts = 1
        var s = training(cfg, [a, b])
        var failed = ControlMessage(.failed)
        failed.reason = "peer lost"
        failed.epoch = 1
        _ = s.event(.message(from: a, failed, now: 1))
        for id in [a, b] { _ = s.event(.message(from: id, CoordinatorStateTests.register(), now: 1.1)) }
        for id in [a, b] { _ = s.event(.message(from: id, ControlMessage(.ready), now: 1.2)) }
        failed.epoch = 2
        let out = s.event(.message(from: b, failed, now: 2))
        #expect(logs(out).contains { $0.contains("giving up after 1 recoveries within 600 s") })
        #expect(sends(out).allSatisfy { $0.1.kind == .shutdown })
    }

    @Test func elasticGrowsBackAfterACheckpoint() throws {
        var s = training(try Self.config(policy: .elastic), [a, b])
        _ = s.event(.message(from: a, ControlMessage(.heartbeat), now: 1.2))
        _ = s.event(.tick(now: 1.6))
        _ = s.event(.message(from: a, CoordinatorStateTests.register(), now: 2))
        _ = s.event(.message(from: a, ControlMessage(.heartbeat), now: 6))
        _ = s.event(.tick(now: 6.7))          // alone now
        _ = s.event(.message(from: a, ControlMessage(.ready), now: 6.8))
        #expect(s.worldSize == 1 && s.phase == .running)
        // c registers while a trains: after the current step, a checkpoint, then the world grows back.
        _ = s.event(.message(from: c, CoordinatorStateTests.register(), now: 7))
        let afterStep = sends(s.event(.message(from: a, done(0, epoch: 2), now: 7.1)))
        #expect(afterStep.map(\.1.kind) == [.checkpoint])
        _ = s.event(.message(from: a, CoordinatorStateTests.shardsDone(step: 1, ranks: [0], epoch: 2), now: 7.2))
        let grow = s.event(.committed(step: 1, path: "/ck/step-1", error: nil, now: 7.2))
        #expect(sends(grow).map(\.1.kind) == [.reset])
        let assigned = sends(s.event(.message(from: a, CoordinatorStateTests.register(), now: 7.3)))
        #expect(assigned.count == 2 && assigned.allSatisfy { $0.1.worldSize == 2 && $0.1.step == 1 })
        #expect(assigned[0].1.config?.training.gradientAccumulationSteps == 2)
    }

    @Test func aNonFiniteStreakRollsBackToTheCheckpointOnceThenStops() throws {
        var s = training(try Self.config(), [a, b])
        run(&s, [a, b], steps: 0..<3, epoch: 1, now: 0.5)   // checkpoint at step 2
        var diverged = ControlMessage(.failed)
        diverged.reason = "rank 0: step 3: 3 consecutive updates skipped"
        diverged.nonFinite = true
        diverged.epoch = 1
        let out = s.event(.message(from: a, diverged, now: 1))
        #expect(logs(out).contains { $0.contains("rolling back to the last checkpoint") })
        // The workers' replicas (newer than the checkpoint) are not used: the checkpoint is.
        var withReplicas = CoordinatorStateTests.register()
        withReplicas.replicas = [ReplicaInfo(rank: 0, worldSize: 2, step: 3, own: true), ReplicaInfo(rank: 1, worldSize: 2, step: 3, own: false)]
        _ = s.event(.message(from: a, withReplicas, now: 1.1))
        let assigned = sends(s.event(.message(from: b, withReplicas, now: 1.1)))
        #expect(assigned.allSatisfy { $0.1.restore == nil && $0.1.resumeFrom == "/ck/step-2" && $0.1.step == 2 })
        for id in [a, b] { _ = s.event(.message(from: id, ControlMessage(.ready), now: 1.2)) }
        // Diverging again after rolling back to the same checkpoint ends the job.
        diverged.epoch = 2
        let again = s.event(.message(from: b, diverged, now: 2))
        #expect(logs(again).contains { $0.contains("already rolled back to step 2 once") })
        #expect(sends(again).allSatisfy { $0.1.kind == .shutdown })
    }

    @Test func replicasCoveringEveryRankAreUsedAndTheSurvivorsKeepTheirRanks() throws {
        var s = training(try Self.config(workers: 3), [a, b, c])
        run(&s, [a, b, c], steps: 0..<3, epoch: 1, now: 0.5)   // checkpoint at step 2
        var failed = ControlMessage(.failed)
        failed.epoch = 1
        failed.reason = "peer lost"
        _ = s.event(.message(from: a, failed, now: 1))
        // Rank 1's worker (b) died; a held rank 0 and a copy of rank 2, c held rank 2 and a copy of rank 1 — at step 3.
        func reg(_ infos: [ReplicaInfo]) -> ControlMessage { var m = CoordinatorStateTests.register(); m.replicas = infos; return m }
        let d = Data([4])
        _ = s.event(.message(from: d, reg([]), now: 1.1))   // the replacement registers first
        _ = s.event(.message(from: c, reg([ReplicaInfo(rank: 2, worldSize: 3, step: 3, own: true), ReplicaInfo(rank: 1, worldSize: 3, step: 3, own: false)]), now: 1.1))
        let out = s.event(.message(from: a, reg([ReplicaInfo(rank: 0, worldSize: 3, step: 3, own: true), ReplicaInfo(rank: 2, worldSize: 3, step: 3, own: false)]), now: 1.1))
        let assigned = sends(out)
        #expect(assigned.count == 3)
        let ranks = Dictionary(uniqueKeysWithValues: assigned.map { ($0.0, $0.1.ranks ?? []) })
        #expect(ranks[a] == [0] && ranks[d] == [1] && ranks[c] == [2])
        let restore = try #require(assigned.first?.1.restore)
        // Rank 1's shard comes from c (rank 2); ranks 0 and 2 are local. Step 3 is newer than the checkpoint.
        #expect(restore.step == 3 && restore.sources == [nil, 2, nil])
        #expect(assigned.allSatisfy { $0.1.resumeFrom == nil && $0.1.step == 3 })
        #expect(logs(out).contains { $0.contains("restores step 3 from the workers' in-memory replicas, no checkpoint file read (rank 1 from rank 2") })
    }

    @Test func aFinishedJobSaysSoAndDoesNotTrainAgain() throws {
        var cfg = try Self.config(workers: 1, steps: 30)
        cfg.faultTolerance.policy = .stop
        var s = CoordinatorState(config: cfg, configHash: "abc", jobID: 1, dataFiles: ["t"], startStep: 30, resumeFrom: "/ck/step-30")
        _ = s.event(.message(from: a, CoordinatorStateTests.register(), now: 0))
        let out = s.event(.message(from: a, ControlMessage(.ready), now: 0.1))
        #expect(sends(out).map(\.1.kind) == [.shutdown])
        #expect(logs(out).contains("the job has already finished: step 30 of 30"))
        #expect(s.event(.message(from: a, ControlMessage(.bye), now: 0.2)).last == .exit(code: 0, message: "the job has already finished: step 30 of 30"))
    }
}

extension CoordinatorRecoveryTests {
    /// A restarted coordinator does not resume past the steps its run's metrics record: a replica
    /// generation newer than that would leave steps without a record.
    @Test func aRestartedCoordinatorUsesNoReplicaNewerThanTheRecordedSteps() throws {
        func reg(_ infos: [ReplicaInfo]) -> ControlMessage { var m = CoordinatorStateTests.register(); m.replicas = infos; return m }
        let held = { (rank: Int) in [50, 55].map { ReplicaInfo(rank: rank, worldSize: 2, step: $0, own: true) } }
        for (recorded, expected) in [(54, 50), (55, 55), (60, 55)] {
            var s = CoordinatorState(config: try Self.config(steps: 100), configHash: "abc", jobID: 1, dataFiles: ["t"], startStep: 40,
                                     resumeFrom: "/ck/step-40", recordedSteps: recorded)
            _ = s.event(.message(from: a, reg(held(0)), now: 0))
            let assigned = sends(s.event(.message(from: b, reg(held(1)), now: 0)))
            #expect(assigned.allSatisfy { $0.1.restore?.step == expected && $0.1.step == expected }, "recorded \(recorded)")
        }
    }
}
