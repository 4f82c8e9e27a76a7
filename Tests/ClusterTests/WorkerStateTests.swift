import Checkpoint
import Cluster
import Foundation
import Testing
import Training
import Zero

/// The worker's protocol logic, driven by hand: no sockets, no threads, no clocks.
@Suite struct WorkerStateTests {
    static func settings(devices: Int = 2) -> WorkerState.Settings {
        var s = WorkerState.Settings(coordinator: "tcp://c:1", devices: devices, endpoints: (0..<devices).map { "tcp://w:\($0)" },
                                     host: "w", pid: 42)
        s.connectTimeoutSeconds = 10
        s.configHash = "abc"
        return s
    }

    /// The policy "stop" by default: these tests pin the behaviour without recovery (WorkerRecoveryTests has the rest).
    static func config(policy: FaultToleranceConfig.Policy = .stop) throws -> TrainConfig {
        var c = try TrainConfig.parse(text: "model: {num_layers: 1, hidden_size: 8, num_attention_heads: 2}")
        c.cluster.heartbeatIntervalMs = 100
        c.cluster.heartbeatTimeoutMs = 1000
        c.faultTolerance.policy = policy
        return c
    }

    static func assign(ranks: [Int] = [0, 1], policy: FaultToleranceConfig.Policy = .stop) throws -> ControlMessage {
        var a = ControlMessage(.assign)
        a.ranks = ranks
        a.worldSize = 4
        a.jobID = 9
        a.epoch = 1
        a.config = try config(policy: policy)
        a.successors = ranks.map { "tcp://next:\($0)" }
        return a
    }

    static func report(loss: Float, compute: Double, exposed: Double, sums: [UInt64] = [1, 2]) -> StepReport {
        StepReport(metrics: StepMetrics(step: 0, loss: loss, auxLoss: 0, lr: 0.1, gradNorm: 1, tokens: 8, seconds: compute + exposed),
                   checksums: sums, computeSeconds: compute, exposedCommunicationSeconds: exposed, bytesSent: ["allReduce": 8],
                   memory: MemoryLedger(capacity: nil, rank: 0).snapshot)
    }

    /// The messages sent, heartbeats left out unless asked for.
    func sent(_ actions: [WorkerState.Action], heartbeats: Bool = false) -> [ControlMessage] {
        actions.compactMap { if case let .send(m) = $0, heartbeats || m.kind != .heartbeat { return m } else { return nil } }
    }

    /// A worker that registered and was assigned ranks 0 and 1, its devices ready.
    func running() throws -> WorkerState {
        var s = WorkerState(settings: Self.settings())
        _ = s.event(.start(now: 0))
        _ = s.event(.message(try Self.assign(), now: 0.1))
        _ = s.event(.device(.ready(device: 0), now: 0.2))
        _ = s.event(.device(.ready(device: 1), now: 0.2))
        #expect(s.phase == .ready)
        return s
    }

    // MARK: registration and refusal

    @Test func registersWithBackoffUntilAssigned() throws {
        var s = WorkerState(settings: Self.settings())
        let first = s.event(.start(now: 0))
        guard case let .register(r)? = first.first else { Issue.record("no registration: \(first)"); return }
        #expect(r.kind == .register && r.devices == 2 && r.endpoints == ["tcp://w:0", "tcp://w:1"] && r.configHash == "abc"
                && r.pid == 42 && r.protocolVersion == ControlMessage.protocolVersion)
        // Not delivered (no connection yet): retried after 50 ms, and the wait does not grow.
        _ = s.event(.registrationSent(delivered: false, now: 0))
        #expect(s.nextDeadline == 0.05)
        #expect(s.event(.tick(now: 0.04)).isEmpty)
        guard case .register? = s.event(.tick(now: 0.05)).first else { Issue.record("no retry"); return }
        // Delivered but unanswered (the job waits for other workers): the wait doubles up to 1 s.
        _ = s.event(.registrationSent(delivered: true, now: 0.05))
        #expect(s.nextDeadline == 0.1)
        _ = s.event(.tick(now: 0.1))
        _ = s.event(.registrationSent(delivered: true, now: 0.1))
        #expect(abs(s.nextDeadline! - 0.2) < 1e-12)
        let assigned = s.event(.message(try Self.assign(), now: 0.3))
        #expect(assigned.contains(.log("worker pid 42: ranks 0,1 of 4")))
        guard case let .startDevices(a)? = assigned.last else { Issue.record("devices not started: \(assigned)"); return }
        #expect(a.ranks == [0, 1] && a.worldSize == 4 && a.jobID == 9 && a.successors == ["tcp://next:0", "tcp://next:1"])
        #expect(s.phase == .starting)
        // Ready once every device is.
        #expect(sent(s.event(.device(.ready(device: 1), now: 0.4))).isEmpty)
        #expect(sent(s.event(.device(.ready(device: 0), now: 0.5))).map(\.kind) == [.ready])
    }

    @Test func refusalEndsTheWorkerAsBadInput() throws {
        var s = WorkerState(settings: Self.settings())
        _ = s.event(.start(now: 0))
        var refused = ControlMessage(.refused)
        refused.reason = "config hash abc differs from the job's def"
        #expect(s.event(.message(refused, now: 0.2)) == [.exit(.refused("the coordinator refused this worker: config hash abc differs from the job's def"))])
        #expect(s.phase == .done && s.nextDeadline == nil)
    }

    @Test func aMalformedAssignmentOrAnEarlyShutdownFails() throws {
        var s = WorkerState(settings: Self.settings())
        _ = s.event(.start(now: 0))
        #expect(s.event(.message(try Self.assign(ranks: [0]), now: 0.1)) == [.exit(.failed("malformed assignment from the coordinator"))])
        var t = WorkerState(settings: Self.settings())
        _ = t.event(.start(now: 0))
        var shutdown = ControlMessage(.shutdown)
        shutdown.reason = "stopped before training started"
        #expect(t.event(.message(shutdown, now: 0.1))
                == [.exit(.failed("the coordinator shut the job down before it started: stopped before training started"))])
    }

    @Test func aCoordinatorThatNeverAnswersTimesOut() {
        var s = WorkerState(settings: Self.settings())
        _ = s.event(.start(now: 0))
        _ = s.event(.registrationSent(delivered: false, now: 0))
        #expect(s.nextDeadline == 0.05)
        #expect(s.event(.tick(now: 10)) == [.exit(.failed("no coordinator answered at tcp://c:1 within 10 s"))])
    }

    // MARK: heartbeats, both directions

    @Test func heartbeatsGoOutWhileMessagesStreamIn() throws {
        var s = try running()
        // The last one went out at 0.2 (100 ms after the assignment); the next is due at 0.3,
        // whether the loop wakes for a message or for the deadline.
        #expect(abs(s.nextDeadline! - 0.3) < 1e-12)
        #expect(sent(s.event(.message(ControlMessage(.heartbeat), now: 0.25)), heartbeats: true).isEmpty)
        #expect(sent(s.event(.message(ControlMessage(.heartbeat), now: 0.35)), heartbeats: true).map(\.kind) == [.heartbeat])
        #expect(sent(s.event(.tick(now: 0.4)), heartbeats: true).isEmpty)
        #expect(sent(s.event(.tick(now: s.nextDeadline!)), heartbeats: true).map(\.kind) == [.heartbeat])
    }

    @Test func aSilentCoordinatorIsLost() throws {
        var s = try running()
        _ = s.event(.message(ControlMessage(.heartbeat), now: 0.5))   // heard at 0.5
        #expect(s.nextDeadline! <= 1.5)
        let actions = s.event(.tick(now: 1.5))
        #expect(actions == [.stopDevices, .exit(.failed("lost the coordinator at tcp://c:1: no message for 1 s"))])
    }

    // MARK: steps and checkpoints

    @Test func aStepIsReportedOnceEveryDeviceIsDone() throws {
        var s = try running()
        var step = ControlMessage(.step)
        step.step = 0
        step.checksum = true
        #expect(s.event(.message(step, now: 1)).contains(.order(.step(0, checksum: true, replicate: false))))
        #expect(sent(s.event(.device(.stepDone(device: 1, Self.report(loss: 2, compute: 0.3, exposed: 0.05, sums: [3, 4])), now: 1.1))).isEmpty)
        let done = sent(s.event(.device(.stepDone(device: 0, Self.report(loss: 2, compute: 0.2, exposed: 0.1)), now: 1.1)))
        #expect(done.count == 1)
        let m = try #require(done.first)
        #expect(m.kind == .stepDone && m.step == 0 && m.metrics?.loss == 2)
        // The split of the slowest device (0.35 s), whose parts add up.
        #expect(m.computeSeconds == 0.3 && m.exposedCommunicationSeconds == 0.05)
        #expect(m.checksums == [[1, 2], [3, 4]] && m.bytesSent?.count == 2 && m.memory?.count == 2)
        #expect(s.phase == .ready)
    }

    static func shard(step: Int, rank: Int) -> ShardRecord {
        ShardRecord(step: step, rank: rank, file: CheckpointFile(name: ShardWriter.fileName(rank: rank, worldSize: 4), rank: rank, start: rank * 10,
                                                                  count: 10, bytes: 100, crc32c: 7),
                    dataCursor: DataCursor(samplesConsumed: 40, globalBatch: 8, seed: 1),
                    schedule: ScheduleState(kind: "cosine", peakLR: 0.1, warmupSteps: 0, totalSteps: 9, numCycles: 0.5, nextLR: 0.05),
                    skippedSteps: 0)
    }

    /// A checkpoint is ordered between steps and written in the background: the next step may
    /// run meanwhile, and the worker reports its ranks' shards once every device's is written.
    @Test func aCheckpointReportsEveryDevicesShardWhenWritten() throws {
        var s = try running()
        var c = ControlMessage(.checkpoint)
        c.step = 5
        c.directory = "/ck"
        #expect(s.event(.message(c, now: 1)).contains(.order(.checkpoint(directory: "/ck"))))
        #expect(s.phase == .ready)
        var step = ControlMessage(.step)
        step.step = 5
        #expect(s.event(.message(step, now: 1.1)).contains(.order(.step(5, checksum: false, replicate: false))))
        #expect(sent(s.event(.device(.checkpointWritten(device: 1, Self.shard(step: 5, rank: 1)), now: 1.2))).isEmpty)
        let done = sent(s.event(.device(.checkpointWritten(device: 0, Self.shard(step: 5, rank: 0)), now: 1.3)))
        #expect(done.map(\.kind) == [.checkpointDone] && done[0].step == 5 && done[0].epoch == 1)
        #expect(done[0].shards?.map(\.rank) == [0, 1])
        #expect(s.phase == .stepping)
    }

    /// A shard that cannot be written is reported once per checkpoint; the devices train on.
    @Test func aShardThatCannotBeWrittenIsReportedOnceAndTrainingGoesOn() throws {
        var s = try running()
        var c = ControlMessage(.checkpoint)
        c.step = 5
        c.directory = "/ck"
        _ = s.event(.message(c, now: 1))
        struct Full: Error, CustomStringConvertible { var description: String { "No space left on device" } }
        let actions = s.event(.device(.checkpointFailed(device: 1, step: 5, DeviceFailure(rank: 1, error: Full())), now: 1.2))
        let report = sent(actions)
        #expect(report.map(\.kind) == [.checkpointFailed] && report[0].step == 5 && report[0].epoch == 1)
        #expect(report[0].reason == "rank 1: No space left on device")
        #expect(!actions.contains(.stopDevices) && s.phase == .ready)
        // The other device's shard of that checkpoint, or its failure, is not reported.
        #expect(sent(s.event(.device(.checkpointWritten(device: 0, Self.shard(step: 5, rank: 0)), now: 1.3))).isEmpty)
        #expect(sent(s.event(.device(.checkpointFailed(device: 0, step: 5, DeviceFailure(rank: 0, error: Full())), now: 1.4))).isEmpty)
        var step = ControlMessage(.step)
        step.step = 5
        #expect(s.event(.message(step, now: 1.5)).contains(.order(.step(5, checksum: false, replicate: false))))
    }

    // MARK: device failure

    @Test func aFailedDeviceFailsTheWorkerAndTellsTheCoordinator() throws {
        var s = try running()
        struct Boom: Error, CustomStringConvertible { var description: String { "collective timed out" } }
        let actions = s.event(.device(.failed(device: 1, DeviceFailure(rank: 1, error: Boom())), now: 2))
        let failed = sent(actions)
        #expect(failed.map(\.kind) == [.failed] && failed[0].reason == "rank 1: collective timed out")
        #expect(actions.contains(.stopDevices)
                && actions.last == .exit(.failed("rank 1: collective timed out", cause: DeviceFailure(rank: 1, error: Boom()))))
        // Reports that arrive afterwards change nothing.
        #expect(s.event(.device(.stopped(device: 0), now: 2.1)).isEmpty)
    }

    // MARK: shutdown

    @Test func shutdownStopsTheDevicesThenSaysBye() throws {
        var s = try running()
        var shutdown = ControlMessage(.shutdown)
        shutdown.reason = "finished 2 steps"
        #expect(s.event(.message(shutdown, now: 3)) == [.stopDevices])
        #expect(s.phase == .stopping)
        #expect(s.event(.device(.stopped(device: 0), now: 3.1)).isEmpty)
        #expect(s.event(.device(.stopped(device: 1), now: 3.2)) == [.send(ControlMessage(.bye)), .exit(.finished)])
    }

    @Test func devicesThatDoNotStopAreLeftAfterTheGrace() throws {
        var s = try running()
        _ = s.event(.message(ControlMessage(.shutdown), now: 3))
        #expect(s.nextDeadline == 3 + Self.settings().deviceStopGraceSeconds)
        #expect(s.event(.tick(now: 3 + Self.settings().deviceStopGraceSeconds)) == [.send(ControlMessage(.bye)), .exit(.finished)])
    }

    @Test func aStopSignalLeavesTheJob() throws {
        var s = try running()
        let actions = s.event(.stopRequested(now: 4))
        let failed = sent(actions)
        #expect(failed.map(\.kind) == [.failed] && failed[0].reason == "worker pid 42 on w was stopped by a signal")
        #expect(actions.last == .stopDevices)
        _ = s.event(.device(.stopped(device: 0), now: 4.1))
        #expect(s.event(.device(.stopped(device: 1), now: 4.2)) == [.exit(.stopped)])
        // Before it has joined, a worker simply leaves.
        var t = WorkerState(settings: Self.settings())
        _ = t.event(.start(now: 0))
        #expect(t.event(.stopRequested(now: 0.1)) == [.exit(.stopped)])
    }
}
