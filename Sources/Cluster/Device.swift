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
        /// Every rank's worker's memory domain (nil: unknown); same-domain neighbours share replicas through /dev/shm.
        var memoryDomains: [String?]? = nil
        /// The worker's log.
        var log: @Sendable (String) -> Void = { _ in }

        /// Whether rank `a`'s and rank `b`'s workers share /dev/shm (and the config lets replicas use it).
        func sharesMemory(_ a: Int, _ b: Int) -> Bool {
            guard config.faultTolerance.replicaTransport == .auto, let d = memoryDomains, let x = d[a] else { return false }
            return x == d[b]
        }
    }

    /// How this rank's replica reaches its successor, and its predecessor's reaches it: through
    /// shared-memory slots where they are on the same host, else over the ring.
    struct ReplicaRoute: Sendable {
        let outgoing: ReplicaSlots?
        let incoming: PredecessorSlots?
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
            let capacity = trainer.partitionPlan.largestShardCount
            let replicas = s.config.faultTolerance.replicaInterval > 0 && s.worldSize > 1
            let (successor, predecessor) = ((s.rank + 1) % s.worldSize, (s.rank - 1 + s.worldSize) % s.worldSize)
            let route = ReplicaRoute(
                outgoing: replicas && s.sharesMemory(s.rank, successor)
                    ? ReplicaSlots(jobID: s.jobID, epoch: s.epoch, rank: s.rank, capacity: capacity) : nil,
                incoming: replicas && s.sharesMemory(s.rank, predecessor) ? PredecessorSlots() : nil)
            defer { route.outgoing?.unlinkAll() }
            if route.outgoing != nil { s.log("rank \(s.rank): replicas go to rank \(successor) through shared memory (the same host)") }
            Self.prewarmSnapshots(capacity: capacity, replicas: s.config.faultTolerance.replicaInterval > 0, route: route)
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
                    if replicate { r.replicaSeconds = refreshReplica(trainer, route) }
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
    /// returns the seconds taken on the training thread (the snapshot). A same-host successor
    /// gets only a notice of the shared-memory slot the snapshot was taken into, and a same-host
    /// predecessor's replica is its slot, mapped.
    private func refreshReplica(_ trainer: Trainer, _ route: ReplicaRoute) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        var slot = -1
        var own: ShardSnapshot?
        if let slots = route.outgoing {
            do {
                let next = try slots.next()
                own = trainer.snapshot(into: next.storage)
                slot = next.slot
            } catch {
                setup.log("warning: rank \(trainer.rank): the replica of step \(trainer.step) goes without its successor's copy: \(error)")
            }
        }
        let snapshot = own ?? trainer.snapshot()
        let store = setup.replicas
        store.put(snapshot, own: true)
        if let queue = trainer.engine.queue {
            let predecessor = (trainer.rank - 1 + trainer.worldSize) % trainer.worldSize
            let r = trainer.partitionPlan.shardRange(predecessor)
            // What goes out: the snapshot, or the notice of its slot.
            let notice = route.outgoing.map { _ in FloatBuffer(count: ReplicaNotice.bytes / 4) }
            let send: UnsafeRawBufferPointer
            if let slots = route.outgoing, let notice {
                let words = (slot >= 0 ? slots.seal(slot: slot, step: snapshot.step)
                    : ReplicaNotice(pid: getpid(), jobID: setup.jobID, epoch: setup.epoch, rank: trainer.rank, slot: -1, step: snapshot.step)).encoded
                UnsafeMutableRawPointer(notice.pointer).copyMemory(from: words, byteCount: ReplicaNotice.bytes)
                send = UnsafeRawBufferPointer(notice.buffer)
            } else {
                send = UnsafeRawBufferPointer(snapshot.storage.buffer)
            }
            // What comes in: the predecessor's snapshot, or the notice of its slot.
            let incoming = route.incoming == nil ? ShardSnapshot(replicaOf: predecessor, start: r.lowerBound, count: r.count, like: snapshot) : nil
            let received = incoming == nil ? FloatBuffer(count: ReplicaNotice.bytes / 4) : nil
            let receive = UnsafeMutableRawBufferPointer(incoming?.storage.buffer ?? received!.buffer)
            let pause = setup.faultDelays.beforeReplicaExchangeMs
            if pause > 0 { queue.submit { _ in usleep(useconds_t(pause * 1000)) } }
            let (log, s) = (setup.log, setup)
            queue.exchangeInBackground(send: send, receive: receive) {
                withExtendedLifetime((snapshot, notice)) {
                    if let incoming { return store.put(incoming, own: false) }
                    guard let slots = route.incoming, let received else { return }
                    do {
                        guard let n = ReplicaNotice(UnsafeRawBufferPointer(received.buffer)), n.jobID == s.jobID, n.epoch == s.epoch,
                              n.rank == predecessor, n.step == snapshot.step else {
                            throw ClusterError(.runtime, "a malformed replica notice from rank \(predecessor)")
                        }
                        // The predecessor could not keep a shared copy this time (it said why in its log).
                        guard n.slot >= 0 else { return }
                        store.put(try slots.replica(n, start: r.lowerBound, count: r.count, like: snapshot), own: false)
                    } catch {
                        log("warning: rank \((predecessor + 1) % s.worldSize): no replica of rank \(predecessor) at step \(snapshot.step): \(error)")
                    }
                }
            }
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Faults in the snapshot buffers this rank will need — one for checkpoints; with replicas,
    /// the two generations of its own and its predecessor's shard plus the next one's, each
    /// only where it travels over the network (a same-host replica lives in shared-memory slots,
    /// created here too) — on a thread of its own, so that neither the start-up nor the first
    /// saves wait for it (a fresh buffer's page faults cost ≈ 2 s per 600 MB here, against 0.1 s
    /// for the copy into a warm one).
    private static func prewarmSnapshots(capacity: Int, replicas: Bool, route: ReplicaRoute) {
        let pooled = replicas ? (route.outgoing == nil ? 3 : 0) + (route.incoming == nil ? 3 : 0) : 0
        let thread = Thread {
            route.outgoing?.prepare()
            ShardSnapshot.prewarm(capacity: capacity, buffers: max(1, pooled))
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
