import Checkpoint
import Comm
import Common
import Evaluation
import Foundation
import Tensor
import Training
import Zero

/// One rank inside a worker: its own thread, thread pool, trainer and ring link. The worker's
/// loop gives it orders; it runs them one at a time and reports every outcome through `report`,
/// which hands the report to the loop and wakes it. Nothing else crosses threads.
final class Device: Sendable {
    struct Setup: Sendable {
        let index: Int
        let rank: Int, worldSize: Int, jobID: UInt64, epoch: UInt64
        let config: TrainConfig
        let link: LinkHandoff
        let successor: String
        /// The successor's CURVE key when the ring is encrypted and the successor is another process.
        let successorKey: String?
        let threads: Int
        let numaNode: Int
        let resumeFrom: String?
        let restore: ReplicaRestore?
        let replicas: ReplicaStore
        let faultDelays: Worker.FaultDelays
        let partitionPlan: PartitionPlan?
        let afterStep: Worker.StepHook?
        var forensicsDirectory: String? = nil
    }

    enum Order: Sendable { case step(Int, checksum: Bool, replicate: Bool), checkpoint(URL), stop }

    let setup: Setup
    private let orders = Monitor<[Order]>([])
    private let report: @Sendable (DeviceReport) -> Void

    init(setup: Setup, report: @escaping @Sendable (DeviceReport) -> Void) {
        self.setup = setup
        self.report = report
        let thread = Thread { [self] in
            self.main()
            report(.stopped(device: setup.index))
        }
        thread.name = "zerotrain-device-\(setup.rank)"
        thread.stackSize = 16 << 20
        thread.start()
    }

    func order(_ o: Order) { orders.withLock { $0.append(o) } }

    private func main() {
        NUMAPlacement.bindCurrentThread(toNode: setup.numaNode)
        let s = setup
        do {
            let link = s.link
            let ring = RingConnection(membership: CollectiveQueue.Membership(rank: s.rank, worldSize: s.worldSize, epoch: s.epoch, jobID: s.jobID),
                                      partitionPlan: s.partitionPlan,
                                      forensicsDirectory: s.forensicsDirectory.map { URL(fileURLWithPath: $0) }) {
                let transport = try link.take()
                try transport.connect(successor: s.successor, publicKey: s.successorKey)
                return transport
            }
            let trainer = try Trainer(config: s.config, pool: ThreadPool(threads: s.threads), ring: ring)
            if let resume = s.resumeFrom { try trainer.resume(from: URL(fileURLWithPath: resume)) }
            if let restore = s.restore {
                let store = s.replicas, worldSize = s.worldSize
                try trainer.restore(step: restore.step, transfers: restore.transfers) { store.snapshot(rank: $0, worldSize: worldSize, step: restore.step) }
            }
            let writer = CheckpointWriter(rank: s.rank, pauseAfterWrite: s.faultDelays.afterShardWriteMs)
            defer { writer.waitIdle(); writer.close() }
            Self.prewarmSnapshots(capacity: trainer.partitionPlan.largestShardCount, replicas: s.config.faultTolerance.replicaInterval > 0)
            var checkpointSeconds = 0.0
            report(.ready(device: s.index))
            while true {
                let next = orders.wait { $0.isEmpty ? nil : $0.removeFirst() }
                switch next {
                case .stop:
                    return
                case let .step(step, checksum, replicate):
                    guard trainer.step == step else {
                        throw ClusterError(.runtime, "asked for step \(step) but at step \(trainer.step)")
                    }
                    var r = try runStep(trainer, checksum: checksum)
                    if replicate { r.replicaSeconds = refreshReplica(trainer) }
                    r.checkpointSeconds = checkpointSeconds
                    checkpointSeconds = 0
                    report(.stepDone(device: s.index, r))
                case let .checkpoint(directory):
                    // The snapshot is the only part on the step's path; the shard is written in the background.
                    let start = DispatchTime.now().uptimeNanoseconds
                    // One snapshot buffer suffices: the previous save's is free once it is written.
                    writer.waitIdle()
                    let snapshot = trainer.snapshot()
                    let (index, rank, report) = (s.index, s.rank, self.report)
                    let step = snapshot.step
                    writer.submit(snapshot, into: CheckpointStore(directory: directory).pendingFolder(step: step)) { result in
                        switch result {
                        case let .success(record): report(.checkpointWritten(device: index, record))
                        // The training state is intact: only this checkpoint is lost, and the coordinator decides.
                        case let .failure(error): report(.checkpointFailed(device: index, step: step, DeviceFailure(rank: rank, error: error)))
                        }
                    }
                    checkpointSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                }
            }
        } catch {
            report(.failed(device: s.index, DeviceFailure(rank: s.rank, error: error)))
        }
    }

    /// Puts the rank's shard into the worker's replica store and sends a copy to the ring
    /// successor (whose worker stores it), in the background on the communication thread;
    /// returns the seconds taken on the training thread (the snapshot).
    private func refreshReplica(_ trainer: Trainer) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        let own = trainer.snapshot()
        let store = setup.replicas
        store.put(own, own: true)
        if let queue = trainer.engine.queue {
            let predecessor = (trainer.rank - 1 + trainer.worldSize) % trainer.worldSize
            let r = trainer.partitionPlan.shardRange(predecessor)
            let incoming = ShardSnapshot(replicaOf: predecessor, start: r.lowerBound, count: r.count, like: own)
            let pause = setup.faultDelays.beforeReplicaExchangeMs
            if pause > 0 { queue.submit { _ in usleep(useconds_t(pause * 1000)) } }
            queue.exchangeInBackground(send: UnsafeRawBufferPointer(own.storage.buffer),
                                       receive: UnsafeMutableRawBufferPointer(incoming.storage.buffer)) {
                withExtendedLifetime(own) { store.put(incoming, own: false) }
            }
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Faults in the snapshot buffers this rank will need — one for checkpoints; with replicas,
    /// the two generations of its own and its predecessor's shard plus the next one's — on a
    /// thread of its own, so that neither the start-up nor the first saves wait for it (a fresh
    /// buffer's page faults cost ≈ 2 s per 600 MB here, against 0.1 s for the copy into a warm one).
    private static func prewarmSnapshots(capacity: Int, replicas: Bool) {
        let thread = Thread {
            ShardSnapshot.prewarm(capacity: capacity, buffers: replicas ? 6 : 1)
        }
        thread.name = "zerotrain-prewarm"
        thread.start()
    }

    /// One update with its accounting: compute and exposed communication time, bytes sent,
    /// memory, and (for the divergence guard) per-tensor parameter checksums.
    private func runStep(_ trainer: Trainer, checksum: Bool) throws -> StepReport {
        let queue = trainer.engine.queue
        let exposedBefore = queue?.exposedCommunicationSeconds ?? 0
        let sentBefore = queue?.bytesSent ?? [:]
        let m = try trainer.trainStep()
        var sent: [String: Int] = [:]
        for (op, total) in queue?.bytesSent ?? [:] { sent[op] = total - (sentBefore[op] ?? 0) }
        let exposed = (queue?.exposedCommunicationSeconds ?? 0) - exposedBefore
        try setup.afterStep?(trainer)
        var checksums: [UInt64] = []
        if checksum {
            let parameters = try trainer.fullParameters()
            checksums = trainer.model.table.entries.map { FNV1a.hash(UnsafeBufferPointer(parameters.slice($0.offset, $0.count))) }
        }
        var report = StepReport(metrics: m, checksums: checksums, computeSeconds: max(0, m.seconds - exposed),
                                exposedCommunicationSeconds: exposed, bytesSent: sent, memory: trainer.memory.snapshot)
        report.dataSeconds = trainer.dataSeconds
        // Every rank evaluates after the same steps (a ZeRO-3 forward gathers with all of them).
        if trainer.evaluationDue { report.validation = try trainer.evaluate() }
        return report
    }
}

/// Hands a ring link from the thread that bound it (the worker's) to the device's communication
/// thread, exactly once. libzmq lets a socket change threads across a full memory barrier; the
/// lock here is one.
final class LinkHandoff: @unchecked Sendable {
    // Safe: `link` is set here by the worker's thread, which then never touches it again, and
    // taken once under `lock` by the communication thread.
    private let lock = NSLock()
    private var link: (any RingLink)?

    init(_ link: any RingLink) { self.link = link }

    func take() throws -> any RingLink {
        lock.lock()
        defer { link = nil; lock.unlock() }
        guard let link else { throw CommError(.closed, "the ring link was already taken") }
        return link
    }
}
