import Comm
import Foundation
import Testing
import Model
import Tensor
import Training
import Zero
import ZeroTrainTestKit

/// N ranks as threads in this process, each a real `Trainer` with its real ZeRO engine and `CollectiveQueue`
/// over the in-memory transport: the whole ZeRO schedule (stages, shards, tiers, ledger) without
/// process start-up, so many stage × offload × N combinations fit in a fast test.
enum InProcessCluster {
    struct Run {
        /// Loss and global gradient norm of every step (the same on every rank).
        var losses: [Float]
        var auxLosses: [Float]
        var gradNorms: [Double]
        /// The final parameters, gathered (rank 0's copy).
        var parameters: [Float]
        /// Each rank's ledger after the last step.
        var memory: [MemoryLedger.Snapshot]
        /// Each rank's payload bytes sent in the last step, by collective.
        var bytesSent: [[String: Int]]
        /// Files of the disk tier seen while training ran.
        var diskFiles: [String]
    }

    final class Results: @unchecked Sendable {
        let lock = NSLock()
        var byRank: [Int: Result<Run, any Error>] = [:]
        func put(_ rank: Int, _ r: Result<Run, any Error>) { lock.lock(); byRank[rank] = r; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return byRank.count }
    }

    /// Trains `steps` updates on `n` ranks; every rank runs `training.gradient_accumulation_steps`
    /// micro-batches per update, as in the cluster.
    static func train(_ config: TrainConfig, ranks n: Int, steps: Int) throws -> Run {
        let fabric = InMemoryFabric(worldSize: n)
        let results = Results()
        for rank in 0..<n {
            let thread = Thread {
                results.put(rank, Result { try Self.rank(rank, of: n, config: config, steps: steps, fabric: fabric) })
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        while results.count < n { usleep(2_000) }
        let runs = try (0..<n).map { try results.byRank[$0]!.get() }
        var run = runs[0]
        run.memory = runs.map { $0.memory[0] }
        run.bytesSent = runs.map { $0.bytesSent[0] }
        run.diskFiles = runs.flatMap(\.diskFiles)
        return run
    }

    private static func rank(_ rank: Int, of n: Int, config: TrainConfig, steps: Int, fabric: InMemoryFabric) throws -> Run {
        let ring = RingConnection(membership: CollectiveQueue.Membership(rank: rank, worldSize: n, epoch: 1, jobID: 7)) {
            fabric.transport(rank: rank)
        }
        let trainer = try Trainer(config: config, pool: ThreadPool(threads: 1), ring: ring)
        let queue = try #require(trainer.engine.queue)
        var losses: [Float] = [], auxLosses: [Float] = [], gradNorms: [Double] = []
        var sentBefore: [String: Int] = [:]
        var diskFiles: Set<String> = []
        for _ in 0..<steps {
            sentBefore = queue.bytesSent
            let m = try trainer.trainStep()
            losses.append(m.loss)
            auxLosses.append(m.auxLoss)
            gradNorms.append(m.gradNorm)
            for b in trainer.engine.offloadedState {
                if let f = b.file, FileManager.default.fileExists(atPath: f.path) { diskFiles.insert(f.path) }
            }
        }
        var sent: [String: Int] = [:]
        for (op, total) in queue.bytesSent { sent[op] = total - (sentBefore[op] ?? 0) }
        let parameters = try trainer.fullParameters().toArray()
        return Run(losses: losses, auxLosses: auxLosses, gradNorms: gradNorms, parameters: parameters, memory: [trainer.memory.snapshot], bytesSent: [sent],
                   diskFiles: diskFiles.sorted())
    }
}
