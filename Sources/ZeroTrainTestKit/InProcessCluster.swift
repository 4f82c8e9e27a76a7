import Comm
import Common
import Foundation
import Model
import Tensor
import Training
import Zero

/// N ranks as threads in this process, each a real `Trainer` built exactly as a worker's `Device`
/// builds it (`Trainer(config:pool:ring:)`: ledger, model, collective queue, ZeRO engine) over
/// the in-memory transport: the whole ZeRO schedule (stages, shards, tiers, ledger) without
/// process start-up, so many stage × offload × N combinations fit in a fast test.
public enum InProcessCluster {
    public struct Run: Sendable {
        /// Loss and global gradient norm of every step (the same on every rank).
        public var losses: [Float]
        public var auxLosses: [Float]
        public var gradNorms: [Double]
        /// The final parameters, gathered (rank 0's copy).
        public var parameters: [Float]
        /// Each rank's ledger after the last step.
        public var memory: [MemoryLedger.Snapshot]
        /// Each rank's payload bytes sent in the last step, by collective.
        public var bytesSent: [[String: Int]]
        /// Files of the disk tier seen while training ran.
        public var diskFiles: [String]
        /// Which steps were skipped for a non-finite loss or gradient norm (rank 0's view).
        public var skipped: [Bool] = []
        /// The final parameters as each rank gathered them.
        public var parametersPerRank: [[Float]] = []
        /// Every step's metrics as each rank reported them.
        public var metricsPerRank: [[StepMetrics]] = []
    }

    /// Called on each rank's thread: once after its trainer is built, and after each of its steps.
    public typealias Prepare = @Sendable (Trainer) -> Void
    public typealias AfterStep = @Sendable (Trainer, StepMetrics) throws -> Void

    /// Trains `steps` updates on `n` ranks; every rank runs `training.gradient_accumulation_steps`
    /// micro-batches per update, as in the cluster.
    public static func train(_ config: TrainConfig, ranks n: Int, steps: Int, prepare: Prepare? = nil,
                             afterStep: AfterStep? = nil) throws -> Run {
        let fabric = InMemoryFabric(worldSize: n)
        let results = Monitor<[Int: Result<Run, any Error>]>([:])
        for rank in 0..<n {
            let thread = Thread {
                let r = Result { try Self.rank(rank, of: n, config: config, steps: steps, fabric: fabric,
                                                   prepare: prepare, afterStep: afterStep) }
                results.withLock { $0[rank] = r }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        let byRank = results.wait { $0.count == n ? $0 : nil }
        let runs = try (0..<n).map { try byRank[$0]!.get() }
        var run = runs[0]
        run.memory = runs.map { $0.memory[0] }
        run.bytesSent = runs.map { $0.bytesSent[0] }
        run.diskFiles = runs.flatMap(\.diskFiles)
        run.parametersPerRank = runs.map(\.parameters)
        run.metricsPerRank = runs.flatMap(\.metricsPerRank)
        return run
    }

    private static func rank(_ rank: Int, of n: Int, config: TrainConfig, steps: Int, fabric: InMemoryFabric,
                             prepare: Prepare?, afterStep: AfterStep?) throws -> Run {
        let ring = RingConnection(membership: CollectiveQueue.Membership(rank: rank, worldSize: n, epoch: 1, jobID: 7)) {
            fabric.transport(rank: rank)
        }
        let trainer = try Trainer(config: config, pool: ThreadPool(threads: 1), ring: ring)
        guard let queue = trainer.engine.queue else { throw CommError(.invalidArgument, "rank \(rank) has no collective queue") }
        prepare?(trainer)
        var skipped: [Bool] = []
        var losses: [Float] = [], auxLosses: [Float] = [], gradNorms: [Double] = []
        var metrics: [StepMetrics] = []
        var sentBefore: [String: Int] = [:]
        var diskFiles: Set<String> = []
        for _ in 0..<steps {
            sentBefore = queue.bytesSent
            let m = try trainer.trainStep()
            losses.append(m.loss)
            auxLosses.append(m.auxLoss)
            gradNorms.append(m.gradNorm)
            skipped.append(m.skipped)
            metrics.append(m)
            try afterStep?(trainer, m)
            for b in trainer.engine.offloadedState {
                if let f = b.file, FileManager.default.fileExists(atPath: f.path) { diskFiles.insert(f.path) }
            }
        }
        var sent: [String: Int] = [:]
        for (op, total) in queue.bytesSent { sent[op] = total - (sentBefore[op] ?? 0) }
        let parameters = try trainer.fullParameters().toArray()
        return Run(losses: losses, auxLosses: auxLosses, gradNorms: gradNorms, parameters: parameters, memory: [trainer.memory.snapshot], bytesSent: [sent],
                   diskFiles: diskFiles.sorted(), skipped: skipped, metricsPerRank: [metrics])
    }
}
