import Comm
import CommZMQ
import Foundation
import Tensor
import Training
import Zero

/// One rank inside a worker: its own thread, thread pool, model copy, optimizer state and ring
/// connection. The worker's control thread gives it orders; it runs them one at a time.
final class Device: @unchecked Sendable {
    struct Setup: @unchecked Sendable {
        let rank: Int, worldSize: Int, jobID: UInt64, epoch: UInt64
        let config: TrainConfig
        let transport: TransportBox
        let successor: String
        let threads: Int
        let numaNode: Int
        let resumeFrom: String?
        let partitionPlan: PartitionPlan?
    }

    enum Order { case step(Int, checksum: Bool), checkpoint(URL), perturb, stop }

    let setup: Setup
    private let condition = NSCondition()
    private var orders: [Order] = []
    private var busy = false
    private var ready = false
    private var error: String?
    private var completed = -1
    private(set) var lastMetrics: StepMetrics?
    private(set) var lastChecksums: [UInt64] = []
    private(set) var lastComputeSeconds = 0.0
    private(set) var lastExposedSeconds = 0.0
    private(set) var lastCheckpoint: String?
    /// Payload bytes this rank sent during the last step, by collective.
    private(set) var lastBytesSent: [String: Int] = [:]
    /// Device-memory accounting of this rank (set before the model is built).
    private(set) var memorySnapshot: MemoryLedger.Snapshot?

    init(setup: Setup) {
        self.setup = setup
        let thread = Thread { [self] in self.main() }
        thread.name = "zerotrain-device-\(setup.rank)"
        thread.stackSize = 16 << 20
        thread.start()
    }

    var isReady: Bool { condition.lock(); defer { condition.unlock() }; return ready }
    var failure: String? { condition.lock(); defer { condition.unlock() }; return error }
    var completedStep: Int { condition.lock(); defer { condition.unlock() }; return completed }
    var idle: Bool { condition.lock(); defer { condition.unlock() }; return orders.isEmpty && !busy }

    func order(_ o: Order) {
        condition.lock()
        orders.append(o)
        condition.broadcast()
        condition.unlock()
    }

    func stop() { order(.stop) }

    private func main() {
        NUMAPlacement.bindCurrentThread(toNode: setup.numaNode)
        let s = setup
        let trainer: Trainer
        do {
            let box = s.transport
            let ring = RingConnection(membership: CollectiveQueue.Membership(rank: s.rank, worldSize: s.worldSize, epoch: s.epoch, jobID: s.jobID),
                                      partitionPlan: s.partitionPlan) {
                guard let transport = box.transport else { throw CommError(.closed, "transport already used") }
                box.transport = nil
                try transport.connect(successor: s.successor)
                return transport
            }
            trainer = try Trainer(config: s.config, pool: ThreadPool(threads: s.threads), ring: ring)
            memorySnapshot = trainer.memory.snapshot
            if let resume = s.resumeFrom { try trainer.resume(from: URL(fileURLWithPath: resume)) }
        } catch {
            fail("\(error)")
            return
        }
        condition.lock()
        ready = true
        condition.broadcast()
        condition.unlock()
        while true {
            condition.lock()
            while orders.isEmpty { condition.wait() }
            let o = orders.removeFirst()
            busy = true
            condition.unlock()
            do {
                switch o {
                case .stop:
                    return
                case let .step(step, checksum):
                    guard trainer.step == step else {
                        throw ClusterError(.runtime, "asked for step \(step) but at step \(trainer.step)")
                    }
                    let queue = trainer.engine.queue
                    let exposedBefore = queue?.exposedCommunicationSeconds ?? 0
                    let sentBefore = queue?.bytesSent ?? [:]
                    let m = try trainer.trainStep()
                    var sent: [String: Int] = [:]
                    for (op, total) in queue?.bytesSent ?? [:] { sent[op] = total - (sentBefore[op] ?? 0) }
                    lastBytesSent = sent
                    lastExposedSeconds = (queue?.exposedCommunicationSeconds ?? 0) - exposedBefore
                    lastComputeSeconds = max(0, m.seconds - lastExposedSeconds)
                    lastMetrics = m
                    memorySnapshot = trainer.memory.snapshot
                    if checksum {
                        let parameters = try trainer.fullParameters()
                        lastChecksums = trainer.model.table.entries.map {
                            tensorChecksum(UnsafeBufferPointer(parameters.slice($0.offset, $0.count)))
                        }
                    } else {
                        lastChecksums = []
                    }
                    condition.lock()
                    completed = step
                    condition.unlock()
                case let .checkpoint(dir):
                    lastCheckpoint = try trainer.saveCheckpoint(in: dir).path
                case .perturb:
                    trainer.perturbParameter()
                }
            } catch {
                fail("\(error)")
                return
            }
            condition.lock()
            busy = false
            condition.broadcast()
            condition.unlock()
        }
    }

    private func fail(_ message: String) {
        condition.lock()
        error = message
        busy = false
        condition.broadcast()
        condition.unlock()
    }
}
