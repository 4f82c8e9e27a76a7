import Checkpoint
import Data
import Foundation
import Model
import Optim
import Tensor
import Zero

/// One process's training loop: model, AdamW state, data sampler and checkpoints.
///
/// An update: zero the gradients; for each of `accumulation` micro-batches run forward and
/// backward with the loss divided by `accumulation`; take the global gradient norm and clip;
/// AdamW with the scheduled rate on every tensor. Everything random derives from
/// (seed, step, micro-batch), so a resumed run reproduces an uninterrupted one bit for bit.
public final class Trainer {
    public let config: TrainConfig
    public let model: Transformer
    /// AdamW first and second moments of this rank's shard (`optimizerShard`) of the flat buffer,
    /// in the tier `zero.offload_optimizer` names.
    public let expAvg: TierBuffer
    public let expAvgSq: TierBuffer
    /// The elements whose optimizer state this rank holds and updates: everything at ZeRO stage 0,
    /// the rank's shard at stages 1–3.
    public let optimizerShard: Range<Int>
    /// ZeRO stage in effect (0 without data parallelism).
    public let stage: Int
    /// Stages 2–3: the engine that hands the model its regions (the model's residency).
    public let sharded: ShardedResidency?
    /// Which rank owns which elements (the coordinator's, or computed here without one).
    public let partitionPlan: PartitionPlan
    /// This rank's device-memory accounting.
    public let memory: MemoryLedger
    public let sampler: BatchSampler
    public let pool: ThreadPool
    /// Updates completed.
    public private(set) var step = 0
    let optimizer: AdamW
    /// Data parallelism: gradients and scalars are averaged with the other ranks through it.
    public let sync: GradientSync?
    /// This rank and the number of ranks (0 and 1 without `sync`).
    public var rank: Int { sync?.rank ?? 0 }
    public var worldSize: Int { sync?.worldSize ?? 1 }

    /// - Parameter sync: with several ranks, each rank runs `gradient_accumulation_steps`
    ///   micro-batches of its own per update — rank r takes micro-batches r·A … r·A + A − 1 of the
    ///   global step — and gradients and losses are averaged, so N ranks with accumulation A compute
    ///   the same update as one rank with accumulation N·A.
    /// - Parameter model: a model built (and initialised) by an earlier `Trainer` with the same
    ///   config, to reuse its buffers; nil builds and initialises a new one.
    public init(config: TrainConfig, source: TokenSource? = nil, pool: ThreadPool? = nil, sync: GradientSync? = nil,
                model existing: Transformer? = nil, memory ledger: MemoryLedger? = nil,
                partitionPlan plan: PartitionPlan? = nil) throws {
        try config.validate()
        self.config = config
        let t = config.training
        let worldSize = sync?.worldSize ?? 1
        stage = sync == nil ? 0 : config.zero.stage
        memory = try ledger ?? Self.reserveMemory(config: config, rank: sync?.rank ?? 0, worldSize: worldSize, stage: stage)
        self.pool = pool ?? ThreadPool(threads: t.threads)
        if let existing {
            model = existing
        } else {
            GEMM.setThreads(t.threads)
            model = try Self.makeModel(config: config, pool: self.pool, stage: stage)
        }
        let table = model.table
        let partition = plan ?? PartitionPlan(table: table, worldSize: worldSize)
        do {
            try partition.validate()
            try partition.validate(against: table)
        } catch let e as ZeroError {
            throw TrainingError(.badInput, "the partition plan does not fit this model: \(e.message)")
        }
        guard partition.worldSize == worldSize,
              sync.map({ partition.shardRange($0.rank) == $0.shardRange(count: table.count) }) ?? true else {
            throw TrainingError(.badInput, "the partition plan is for \(partition.worldSize) ranks cut differently from this ring of \(worldSize)")
        }
        partitionPlan = partition
        optimizerShard = stage >= 1 ? partition.shardRange(sync!.rank) : 0..<table.count
        let z = config.zero
        let rankName = "rank\(sync?.rank ?? 0)"
        expAvg = try TierBuffer(count: optimizerShard.count, tier: z.optimizerTier, directory: z.offloadDirectory, name: "exp_avg-\(rankName)")
        expAvgSq = try TierBuffer(count: optimizerShard.count, tier: z.optimizerTier, directory: z.offloadDirectory, name: "exp_avg_sq-\(rankName)")
        optimizer = AdamW(t.optim)
        self.sync = sync
        if stage >= 2, let sync {
            var options = ShardedResidency.Options(stage: stage)
            options.prefetchDepth = z.prefetchDepth
            options.maxLiveParameters = z.maxLiveParameters
            options.persistenceThreshold = z.paramPersistenceThreshold
            options.parameterTier = z.parameterTier
            options.offloadDirectory = z.offloadDirectory
            let engine = try ShardedResidency(options: options, table: model.table, plan: partitionPlan, comm: sync, ledger: memory,
                                              modelParameters: stage == 2 ? model.parameters : nil,
                                              timeout: .milliseconds(Int(config.cluster.collectiveTimeoutSeconds * 1000)))
            model.residency = engine
            sharded = engine
            if let shard = engine.parameterShard {
                try Self.initialParameters(config: config, table: model.table, elements: engine.shard, into: shard.pointer)
                try engine.parametersUpdated()
            }
        } else {
            sharded = nil
        }
        sampler = try BatchSampler(source: try source ?? TokenSource.load(config.data), seqLen: config.data.seqLen,
                                   batchSize: t.microBatchSize,
                                   accumulation: t.gradientAccumulationSteps * (sync?.worldSize ?? 1), seed: t.seed)
    }

    /// Enters everything a rank will allocate — parameters, gradients, its AdamW shard, activations
    /// of one micro-batch, communication buckets — into a ledger with the `device:` budget. Call it
    /// before building the model: a configuration that does not fit fails here, with advice.
    /// Shards of every stage (ZeRO 1–3) and tiers (offload) are accounted per rank: device bytes
    /// against the budget, host and disk bytes separately. Stage 2–3 working buffers (region
    /// gradients being reduced, gathered parameters) enter the ledger when they are allocated.
    /// `stage` is the ZeRO stage in effect: `zero.stage` under the cluster (any number of ranks,
    /// so one rank can run stage 3 with offload), 0 for a single `zerotrain train` process.
    public static func reserveMemory(config: TrainConfig, rank: Int, worldSize: Int, stage: Int) throws -> MemoryLedger {
        let ledger = MemoryLedger(capacity: config.device?.capacity, rank: rank)
        let table = ParameterTable(config: config.model)
        let psi = table.count
        let shard = stage >= 1 ? (psi + worldSize - 1) / worldSize : psi
        let z = config.zero
        func advice() -> String {
            let next: String
            switch stage {
            case 0 where worldSize > 1: next = "zero.stage 1 or 2 shards the optimizer state (8Ψ/N per rank instead of 8Ψ), stage 3 all model states (16Ψ/N)"
            case 1, 2: next = "zero.stage 3 shards the parameters too (16Ψ/N per rank), and zero.offload_optimizer: host moves the AdamW moments off the device"
            case 3 where z.offloadOptimizer == .none: next = "zero.offload_optimizer: host (and offload_params: host) moves the optimizer state (and parameters) off the device"
            default: next = "use more ranks, or a smaller training.micro_batch_size or data.seq_len"
            }
            return next + "; `zerotrain plan` shows what fits"
        }
        try ledger.allocate(4 * (stage >= 3 ? shard : psi), .params, tier: stage >= 3 ? z.parameterTier : .device,
                            what: "the parameters", advice: advice())
        try ledger.allocate(4 * (stage >= 2 ? shard : psi), .grads, what: "the gradients", advice: advice())
        try ledger.allocate(8 * shard, .optimizer, tier: z.optimizerTier, what: "the AdamW moments", advice: advice())
        let activations = Transformer.activationBytes(config: config.model, batch: config.training.microBatchSize,
                                                      seqLen: config.data.seqLen)
        try ledger.allocate(activations, .activations, what: "the activations of one micro-batch", advice: advice())
        if worldSize > 1 && stage < 2 {
            try ledger.allocate(2 * Int(config.cluster.bucketMB * 1_048_576), .comm, what: "the communication buckets", advice: advice())
        }
        if stage >= 2 {
            // Allocated while training (ShardedResidency): at most two regions' gradients, and at
            // stage 3 the region in use plus those prefetched. Checked now, entered when allocated.
            let region = MemoryPlanner.largestUnit(table)
            let gathered = stage >= 3 ? z.regionsGatheredAtOnce * region : 0
            try ledger.require(4 * (2 * region + gathered), stage >= 3 ? .gathered : .comm,
                               what: "the stage \(stage) working set (region gradients being reduced\(stage >= 3 ? ", gathered parameters" : ""))",
                               advice: advice())
        }
        return ledger
    }

    /// The model of a fresh run: initialised from `training.init_from` or from the seed. At ZeRO
    /// stage 3 it holds no parameters — the trainer initialises the rank's shard — and at stages
    /// 2–3 no gradients. `stage` as for `reserveMemory`.
    public static func makeModel(config: TrainConfig, pool: ThreadPool, stage: Int = 0) throws -> Transformer {
        let model = try Transformer(config: config.model, pool: pool, ownsParameters: stage < 3, ownsGradients: stage < 2)
        if stage < 3 {
            try initialParameters(config: config, table: model.table, elements: 0..<model.table.count, into: model.parameters.pointer)
        }
        return model
    }

    /// Elements `elements` of the initial flat parameter buffer (from `training.init_from` or the seed) into `out`.
    static func initialParameters(config: TrainConfig, table: ParameterTable, elements: Range<Int>,
                                  into out: UnsafeMutablePointer<Float>) throws {
        if let dir = config.training.initFrom {
            let file = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent("model.safetensors"))
            let full = elements.count == table.count ? nil : FloatBuffer(count: table.count)
            try ModelWeights.load(file, table: table, into: full?.pointer ?? out)
            if let full { out.update(from: full.pointer + elements.lowerBound, count: elements.count) }
        } else {
            Transformer.initialize(config: config.model, table: table, seed: config.model.initialization.seed ?? config.training.seed,
                                   elements: elements, into: out)
        }
    }

    public var isFinished: Bool { step >= config.training.totalSteps }

    /// Runs one update and returns its metrics.
    public func trainStep() throws -> StepMetrics {
        let start = DispatchTime.now().uptimeNanoseconds
        let t = config.training
        let accumulation = t.gradientAccumulationSteps
        // Disk-tier state is read back while forward and backward run.
        for b in [expAvg, expAvgSq] + [sharded?.parameterShard].compactMap({ $0 }) { b.prefetch() }
        let gradientBuffer = sharded?.gradientShard ?? model.gradients
        let grads = gradientBuffer.pointer
        pool.parallelFor(gradientBuffer.count, minChunk: 1 << 16) { r in (grads + r.lowerBound).update(repeating: 0, count: r.count) }
        var lossSum: Double = 0, auxSum: Double = 0
        for local in 0..<accumulation {
            let micro = rank * accumulation + local
            let batch = sampler.batch(step: step, micro: micro)
            let dropout = config.model.dropout > 0
                ? Transformer.DropoutContext(seed: t.seed, stream: Philox.stream(UInt64(step), UInt64(micro)))
                : nil
            let loss = try model.forward(inputs: batch.inputs, targets: batch.targets, batch: batch.batch,
                                         seqLen: batch.seqLen, dropout: dropout)
            let last = local == accumulation - 1 && stage == 0
            try model.backward(scale: 1 / Float(accumulation), gradientsReady: last ? sync?.gradientsReady : nil)
            lossSum += Double(loss)
            auxSum += Double(model.lastAuxLoss)
        }
        let shardGradients = shardGradientBuffer
        var gradNorm: Double
        if let sync {
            // Stage 0 all-reduces (buckets already under way during backward). Stage 1
            // reduce-scatters after backward; stages 2–3 reduce-scatter region by region during
            // backward; either way each rank ends with just its averaged shard. Gradient traffic is
            // 2Ψ(N−1)/N at stages 0–2 (with the parameter all-gather after the update at 1–2); at
            // stage 3 the parameters are gathered twice per micro-batch instead: 3Ψ(N−1)/N.
            switch stage {
            case 0: try sync.finishGradients()
            case 1: _ = try sync.reduceScatterGradients()
            default: try sharded!.finishGradients()
            }
            let shardSquares = stage >= 1 ? GradientClipping.sumOfSquares(shardGradients, pool: pool) : 0
            let totals = try sync.allReduceScalars([lossSum, auxSum, shardSquares])
            lossSum = totals[0] / Double(sync.worldSize)
            auxSum = totals[1] / Double(sync.worldSize)
            gradNorm = stage >= 1 ? totals[2].squareRoot() : GradientClipping.sumOfSquares(model.gradients.buffer, pool: pool).squareRoot()
        } else {
            gradNorm = GradientClipping.sumOfSquares(model.gradients.buffer, pool: pool).squareRoot()
        }
        GradientClipping.scale(shardGradients, norm: gradNorm, maxNorm: t.optim.gradClip, pool: pool)
        let loss = Float(lossSum / Double(accumulation))
        guard loss.isFinite, gradNorm.isFinite else {
            throw TrainingError(.runtime, "training diverged at step \(step + 1): loss \(loss), grad_norm \(gradNorm); lower training.lr or raise warmup_steps")
        }
        let lr = t.schedule.rate(step: step, peak: t.optim.lr)
        optimizerStep(lr: lr, t: step + 1)
        if stage == 1 || stage == 2, let sync { try sync.allGather(model.parameters.buffer) }
        if stage >= 3 { try sharded!.parametersUpdated() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let metrics = StepMetrics(step: step, loss: loss, auxLoss: Float(auxSum / Double(accumulation)), lr: lr,
                                  gradNorm: gradNorm, tokens: worldSize * accumulation * t.microBatchSize * config.data.seqLen,
                                  seconds: seconds)
        step += 1
        return metrics
    }

    /// AdamW over this rank's shard of the flat buffer, split across the pool; each thread updates
    /// the parts of the tensors that fall in its range, with weight decay where the tensor has 2+
    /// dimensions. The moments are indexed relative to the shard.
    func optimizerStep(lr: Double, t: Int) {
        let entries = model.table.entries
        let shard = optimizerShard
        let p = shardParameters.baseAddress! - shard.lowerBound, g = shardGradientBuffer.baseAddress! - shard.lowerBound
        let m = expAvg.pointer - shard.lowerBound, v = expAvgSq.pointer - shard.lowerBound
        pool.parallelFor(shard.count, minChunk: 1 << 16) { local in
            let range = (shard.lowerBound + local.lowerBound)..<(shard.lowerBound + local.upperBound)
            for e in entries where e.offset < range.upperBound && e.offset + e.count > range.lowerBound {
                let lo = max(e.offset, range.lowerBound), hi = min(e.offset + e.count, range.upperBound)
                optimizer.update(parameters: p + lo, gradients: g + lo, m: m + lo, v: v + lo, count: hi - lo,
                                 lr: lr, t: t, decays: e.decays)
            }
        }
    }

    /// This rank's shard of the parameters (all of them at stage 0) — the model's own buffer at
    /// stages 0–2, the stage-3 shard (in its tier) otherwise.
    var shardParameters: UnsafeMutableBufferPointer<Float> {
        if let shard = sharded?.parameterShard { return shard.buffer }
        return model.parameters.slice(optimizerShard.lowerBound, optimizerShard.count)
    }

    /// This rank's averaged gradients, after the step's reduction.
    var shardGradientBuffer: UnsafeMutableBufferPointer<Float> {
        if let sharded { return sharded.gradientShard.buffer }
        return model.gradients.slice(optimizerShard.lowerBound, optimizerShard.count)
    }

    /// The whole of a sharded flat buffer: `part` (this rank's shard) placed in a full-size buffer
    /// that is then all-gathered. A collective when sharded: every rank must call it. Transient
    /// (checkpoints, divergence checks); it lives in host memory, outside the device budget.
    func gathered(_ part: UnsafeMutableBufferPointer<Float>) throws -> FloatBuffer {
        let full = FloatBuffer(count: model.table.count)
        _ = full.slice(optimizerShard.lowerBound, optimizerShard.count).update(fromContentsOf: part)
        if optimizerShard.count != model.table.count, let sync { try sync.allGather(full.buffer) }
        return full
    }

    /// All parameters (gathered from the shards at stage 3; a collective then).
    public func fullParameters() throws -> FloatBuffer {
        sharded?.parameterShard != nil ? try gathered(shardParameters) : model.parameters
    }

    /// Fault injection for the divergence guard's test: nudges the middle parameter of this rank's shard.
    public func perturbParameter() {
        let part = shardParameters
        if !part.isEmpty { part[part.count / 2] += 1e-3 }
    }

    /// The full optimizer moments (gathered from every rank's shard at stages 1–3; a collective
    /// then, so every rank must call it).
    func fullOptimizerState() throws -> (FloatBuffer, FloatBuffer) {
        (try gathered(expAvg.buffer), try gathered(expAvgSq.buffer))
    }

    // MARK: checkpoints

    /// Writes a checkpoint of the current state under `directory`/step-NNNNNNNN and points
    /// `directory`/latest at it. The folder is written under a temporary name and renamed, so
    /// a crash mid-write never leaves a partial checkpoint behind a valid name.
    /// With sharded state (ZeRO 1–3) every rank must call this (the state is gathered
    /// first); only rank 0 writes. The files always hold the full state, so a checkpoint resumes
    /// at any stage and on any number of ranks.
    @discardableResult
    public func saveCheckpoint(in directory: URL) throws -> URL {
        let parameters = try fullParameters()
        let (fullAvg, fullAvgSq) = try fullOptimizerState()
        let fm = FileManager.default
        let name = String(format: "step-%08d", step)
        guard rank == 0 else { return directory.appendingPathComponent(name) }
        let final = directory.appendingPathComponent(name)
        let temp = directory.appendingPathComponent(name + ".tmp")
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            if fm.fileExists(atPath: temp.path) { try fm.removeItem(at: temp) }
            try fm.createDirectory(at: temp, withIntermediateDirectories: true)
        } catch {
            throw TrainingError(.runtime, "cannot create checkpoint folder \(temp.path): \((error as NSError).localizedDescription)")
        }
        var weights = SafeTensorsWriter()
        ModelWeights.add(parameters, table: model.table, to: &weights)
        try weights.write(to: temp.appendingPathComponent("model.safetensors"))
        var optimizerState = SafeTensorsWriter()
        ModelWeights.add(fullAvg, table: model.table, to: &optimizerState, prefix: "exp_avg.")
        ModelWeights.add(fullAvgSq, table: model.table, to: &optimizerState, prefix: "exp_avg_sq.")
        try optimizerState.write(to: temp.appendingPathComponent("optimizer.safetensors"))
        let state = TrainerState(step: step, dataPosition: sampler.position(step: step), seed: config.training.seed,
                                 config: config)
        do {
            if config.model.isHuggingFaceCompatible {
                try config.model.huggingFaceJSON().write(to: temp.appendingPathComponent("config.json"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(state).write(to: temp.appendingPathComponent("trainer_state.json"))
            if worldSize > 1 {
                // Which rank held which piece of every tensor when this was written (the files
                // themselves hold the full, gathered state).
                try encoder.encode(partitionPlan)
                    .write(to: temp.appendingPathComponent("partition_plan.json"))
            }
            if fm.fileExists(atPath: final.path) { try fm.removeItem(at: final) }
            try fm.moveItem(at: temp, to: final)
            try Data((name + "\n").utf8).write(to: directory.appendingPathComponent("latest"), options: .atomic)
        } catch {
            throw TrainingError(.runtime, "cannot write checkpoint \(final.path): \((error as NSError).localizedDescription)")
        }
        return final
    }

    /// Restores weights, optimizer state and step from a checkpoint folder (a step-N folder, or
    /// a checkpoint directory whose `latest` file names one). The model config must match.
    public func resume(from url: URL) throws {
        let folder = try Self.resolveCheckpoint(url)
        let state = try Self.readState(folder)
        guard state.config.model == config.model else {
            throw TrainingError(.badInput, "checkpoint \(folder.path) was written for a different model config")
        }
        let weights = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors"))
        if let shard = sharded?.parameterShard {
            let full = FloatBuffer(count: model.table.count)
            try ModelWeights.load(weights, table: model.table, into: full)
            _ = shard.buffer.update(fromContentsOf: full.slice(optimizerShard.lowerBound, optimizerShard.count))
            try sharded!.parametersUpdated()
        } else {
            try ModelWeights.load(weights, table: model.table, into: model.parameters)
        }
        let optimizerState = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("optimizer.safetensors"))
        let m = FloatBuffer(count: model.table.count), v = FloatBuffer(count: model.table.count)
        try ModelWeights.load(optimizerState, table: model.table, into: m, prefix: "exp_avg.")
        try ModelWeights.load(optimizerState, table: model.table, into: v, prefix: "exp_avg_sq.")
        _ = expAvg.buffer.update(fromContentsOf: m.slice(optimizerShard.lowerBound, optimizerShard.count))
        _ = expAvgSq.buffer.update(fromContentsOf: v.slice(optimizerShard.lowerBound, optimizerShard.count))
        step = state.step
    }

    /// The step folder a resume path refers to.
    public static func resolveCheckpoint(_ url: URL) throws -> URL {
        let fm = FileManager.default
        if fm.fileExists(atPath: url.appendingPathComponent("trainer_state.json").path) { return url }
        let latest = url.appendingPathComponent("latest")
        guard let text = try? String(contentsOf: latest, encoding: .utf8) else {
            throw TrainingError(.badInput, "\(url.path) is not a checkpoint (no trainer_state.json and no latest file)")
        }
        let folder = url.appendingPathComponent(text.trimmingCharacters(in: .whitespacesAndNewlines))
        guard fm.fileExists(atPath: folder.appendingPathComponent("trainer_state.json").path) else {
            throw TrainingError(.badInput, "\(latest.path) names \(folder.lastPathComponent), which is not a complete checkpoint")
        }
        return folder
    }

    public static func readState(_ folder: URL) throws -> TrainerState {
        let path = folder.appendingPathComponent("trainer_state.json")
        guard let data = try? Data(contentsOf: path) else { throw TrainingError(.badInput, "cannot read \(path.path)") }
        do {
            return try JSONDecoder().decode(TrainerState.self, from: data)
        } catch {
            throw TrainingError(.badInput, "\(path.path) is not a valid trainer state")
        }
    }
}

/// trainer_state.json: where a run stands. Random numbers are counter-based functions of
/// (seed, step, micro-batch), so step and seed are the whole RNG state; the data position is
/// the number of sequences consumed, derived from the step.
public struct TrainerState: Codable, Sendable {
    public var formatVersion = 1
    public var step: Int
    public var dataPosition: Int
    public var seed: UInt64
    public var config: TrainConfig

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, dataPosition = "data_position", seed, config
    }

    public init(step: Int, dataPosition: Int, seed: UInt64, config: TrainConfig) {
        self.step = step
        self.dataPosition = dataPosition
        self.seed = seed
        self.config = config
    }
}
