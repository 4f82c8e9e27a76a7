import Checkpoint
import Comm
import Data
import Evaluation
import Foundation
import Model
import Optim
import Tensor
import Zero

/// How a rank of a cluster reaches the other ranks of its job.
public struct RingConnection: Sendable {
    public var membership: CollectiveQueue.Membership
    /// Which rank owns which elements (the coordinator's); nil = computed here.
    public var partitionPlan: PartitionPlan?
    /// Opens the rank's ring link; runs on the rank's communication thread, which then owns it.
    public var openTransport: @Sendable () throws -> any Transport
    /// Where a failed collective writes the rank's flight recorder (`rank-<r>.json`); nil = the log only.
    public var forensicsDirectory: URL?

    public init(membership: CollectiveQueue.Membership, partitionPlan: PartitionPlan? = nil, forensicsDirectory: URL? = nil,
                openTransport: @escaping @Sendable () throws -> any Transport) {
        self.membership = membership
        self.partitionPlan = partitionPlan
        self.forensicsDirectory = forensicsDirectory
        self.openTransport = openTransport
    }
}

/// One rank's training loop: model, ZeRO engine, data sampler and checkpoints.
///
/// An update: zero the gradients; for each of `accumulation` micro-batches run forward and
/// backward with the loss divided by `accumulation`; reduce the gradients across ranks and take
/// the global gradient norm; clip; AdamW with the scheduled rate on the rank's shard; make the
/// parameters current everywhere. What happens to gradients, optimizer state and parameters is
/// the `engine`'s, by ZeRO stage. Everything random derives from (seed, step, micro-batch), so a
/// resumed run reproduces an uninterrupted one bit for bit.
public final class Trainer {
    public let config: TrainConfig
    public let model: Transformer
    /// The ZeRO stage engine: gradients, optimizer state and parameters of this rank.
    public let engine: any ZeroEngine
    /// Which rank owns which elements (the coordinator's, or computed here without one).
    public let partitionPlan: PartitionPlan
    /// This rank's device-memory accounting.
    public let memory: MemoryLedger
    public let sampler: BatchSampler
    /// The held-out validation data (nil: none configured); training never reads it.
    public let heldOut: HeldOutEvaluation?
    /// The distillation teacher (`training.distillation`); nil = plain cross-entropy.
    public let teacher: Teacher?
    public let pool: ThreadPool
    /// Updates completed (applied or skipped).
    public private(set) var step = 0
    /// Updates skipped because the loss or gradient norm was not finite, in total. AdamW's bias
    /// correction counts the applied ones, `step + 1 − skippedSteps`; settable for resume.
    public var skippedSteps = 0
    /// Consecutive skipped updates up to now (0 after an applied one); fp16 overflow skips do not count.
    public internal(set) var nonFiniteStreak = 0
    /// fp16: the dynamic loss scale (nil in other precisions); restored on resume.
    public internal(set) var lossScaler: DynamicLossScaler?
    /// Instrumentation and tests: asked before each micro-batch's backward with (step, micro-batch
    /// of this rank); the factor returned multiplies the backward pass's loss scale. A non-finite
    /// factor makes that micro-batch's gradients non-finite on this rank, as an overflow would.
    public var backwardScaleHook: ((_ step: Int, _ microBatch: Int) -> Float)?
    /// This rank and the number of ranks (0 and 1 when training alone).
    public let rank: Int
    public let worldSize: Int

    /// - Parameter ring: with several ranks, each rank runs `gradient_accumulation_steps`
    ///   micro-batches of its own per update — rank r takes micro-batches r·A … r·A + A − 1 of the
    ///   global step — and gradients and losses are averaged, so N ranks with accumulation A compute
    ///   the same update as one rank with accumulation N·A. Under a cluster the ZeRO stage of the
    ///   config applies (for any number of ranks); alone, stage 0.
    public init(config: TrainConfig, source: TokenSource? = nil, pool: ThreadPool? = nil, ring: RingConnection? = nil) throws {
        try config.validate()
        self.config = config
        let t = config.training
        rank = ring?.membership.rank ?? 0
        worldSize = ring?.membership.worldSize ?? 1
        let stage = ring == nil ? ZeroStage.replicated : config.zero.stage
        memory = try Self.reserveMemory(config: config, rank: rank, worldSize: worldSize, stage: stage)
        self.pool = pool ?? ThreadPool(threads: t.threads)
        // Under a cluster the worker sets the BLAS threads for all its devices.
        if ring == nil { GEMM.setThreads(t.threads) }
        GEMM.backend = t.gemm
        model = try Self.makeModel(config: config, pool: self.pool, stage: stage)
        // fp8: the trainer closes the amax histories' steps, one per optimizer step (`closeFP8Step`).
        model.fp8ClosesStepPerPass = false
        if t.precision == .fp16 { lossScaler = DynamicLossScaler(scale: Float(t.lossScale), growthInterval: t.lossScaleGrowthInterval) }
        let table = model.table
        let partition = ring?.partitionPlan ?? PartitionPlan(table: table, worldSize: worldSize)
        do {
            try partition.validate()
            try partition.validate(against: table)
        } catch let e as ZeroError {
            throw TrainingError(.badInput, "the partition plan does not fit this model: \(e.message)", cause: e)
        }
        guard partition.worldSize == worldSize,
              partition.shardRange(rank) == RingLayout.shardRange(count: table.count, rank: rank, worldSize: worldSize) else {
            throw TrainingError(.badInput, "the partition plan is for \(partition.worldSize) ranks cut differently from this ring of \(worldSize)")
        }
        partitionPlan = partition
        let queue = ring.map {
            var options = ProcessGroup.Options()
            options.forensicsDirectory = $0.forensicsDirectory
            return CollectiveQueue(membership: $0.membership, timeout: .milliseconds(Int(config.cluster.collectiveTimeoutSeconds * 1000)),
                                   options: options, gradientWire: config.zero.reduceDtype == "bf16" ? .bfloat16 : .float32,
                                   openTransport: $0.openTransport)
        }
        do {
            try queue?.waitUntilReady()
            engine = try makeZeroEngine(
                stage: stage, config: config.zero, table: table, parameters: model.parameters, gradients: model.gradients,
                pool: self.pool, queue: queue, plan: partition, ledger: memory, adamW: AdamW(t.optim),
                bucketElements: Int(config.cluster.bucketMB * 1_048_576 / 4),
                initialParameters: { elements, out in try Self.initialParameters(config: config, table: table, elements: elements, into: out) })
            model.residency = engine.residency
            let split = try source.map { ValidationSplit(train: $0, validation: nil) } ?? ValidationSplit.load(config.data)
            sampler = try BatchSampler(source: split.train, seqLen: config.data.seqLen,
                                       batchSize: t.microBatchSize, accumulation: t.gradientAccumulationSteps * worldSize, seed: t.seed)
            heldOut = try split.validation.map {
                try HeldOutEvaluation(tokens: $0, seqLen: config.data.seqLen, batchSize: t.microBatchSize, limit: t.evalSequences)
            }
            let pool = self.pool, ledger = memory
            teacher = try t.distillation.map { d in
                // Sharded as the student's stage 3 by default; on the job's queue, so the gathers of
                // both models queue in the same order on every rank.
                let shard = d.shard ?? (stage == .parametersSharded)
                if shard && queue == nil {
                    throw TrainingError(.badInput, "training.distillation.shard: true needs a cluster (zerotrain local or a coordinator); a single zerotrain train process keeps the whole teacher")
                }
                let sharding = shard ? queue.map { Teacher.Sharding(queue: $0, zero: config.zero, ledger: ledger) } : nil
                return try Teacher(config: d, student: config.model, seqLen: config.data.seqLen, precision: t.precision, pool: pool,
                                   fp8HistoryLength: t.fp8AmaxHistory, sharding: sharding)
            }
            teacher?.model.fp8ClosesStepPerPass = false
            if let teacher {
                // The teacher's weights or shard (and their low-precision copies) and its block of logits live on the device too.
                try memory.allocate(teacher.bytes, .params,
                                    what: "the distillation teacher (\(teacher.model.table.count) parameters\(teacher.sharded.map { ", \($0.shardRange.count) in this rank's shard" } ?? ""))",
                                    advice: "use a smaller teacher, shard it (training.distillation.shard: true) or a larger device budget")
            }
            if t.evalInterval > 0, heldOut == nil {
                throw TrainingError(.badInput, "training.eval_interval: \(t.evalInterval) but there is no validation data (set data.validation_fraction or data.validation_path)")
            }
        } catch {
            queue?.shutdown()
            throw error
        }
    }

    deinit { engine.queue?.shutdown() }

    /// Enters everything a rank will allocate — parameters, gradients, its AdamW shard, activations
    /// of one micro-batch, communication buckets — into a ledger with the `device:` budget, by the
    /// formulas of `ZeroFootprint`. Call it before building the model: a configuration that does
    /// not fit fails here, with advice. The stage 2–3 working set (region gradients being reduced,
    /// gathered parameters) is checked now and entered when allocated. `stage` is the ZeRO stage
    /// in effect: `zero.stage` under the cluster (any number of ranks, so one rank can run stage 3
    /// with offload), 0 for a single `zerotrain train` process.
    public static func reserveMemory(config: TrainConfig, rank: Int, worldSize: Int, stage: ZeroStage) throws -> MemoryLedger {
        let ledger = MemoryLedger(capacity: config.device?.capacity, rank: rank)
        let table = ParameterTable(config: config.model)
        let z = config.zero
        let footprint = ZeroFootprint(
            stage: stage, optimizerTier: z.optimizerTier, parameterTier: z.parameterTier, parameters: table.count, ranks: worldSize,
            largestRegion: table.largestRegion,
            activationBytes: Transformer.activationBytes(config: config.model, batch: config.training.microBatchSize, seqLen: config.data.seqLen,
                                                         precision: config.training.precision,
                                                         checkpointing: config.training.activationCheckpointing),
            bucketBytes: worldSize > 1 ? Int(config.cluster.bucketMB * 1_048_576) : 0,
            regionsGatheredAtOnce: z.regionsGatheredAtOnce, weightCopies: config.training.precision)
        try footprint.reserve(in: ledger, advice: ZeroFootprint.advice(stage: stage, ranks: worldSize,
                                                                       optimizerOffloaded: z.offloadOptimizer != .none))
        return ledger
    }

    /// The model of a fresh run: initialised from `training.init_from` or from the seed. At ZeRO
    /// stage 3 it holds no parameters — the trainer initialises the rank's shard — and at stages
    /// 2–3 no gradients. `stage` as for `reserveMemory`.
    static func makeModel(config: TrainConfig, pool: ThreadPool, stage: ZeroStage) throws -> Transformer {
        let model = try Transformer(config: config.model, pool: pool, ownsParameters: !stage.shardsParameters,
                                    ownsGradients: !stage.shardsGradients,
                                    precision: config.training.precision,
                                    checkpointing: config.training.activationCheckpointing,
                                    fp8HistoryLength: config.training.fp8AmaxHistory)
        if !stage.shardsParameters {
            try initialParameters(config: config, table: model.table, elements: 0..<model.table.count, into: model.parameters.pointer)
        }
        return model
    }

    /// Elements `elements` of the initial flat parameter buffer (from `training.init_from` or the seed) into `out`.
    static func initialParameters(config: TrainConfig, table: ParameterTable, elements: Range<Int>,
                                  into out: UnsafeMutablePointer<Float>) throws {
        if let dir = config.training.initFrom {
            try CheckpointStore.huggingFaceParameters(URL(fileURLWithPath: dir), table: table, elements: elements, into: out)
        } else {
            Transformer.initialize(config: config.model, table: table, seed: config.model.initialization.seed ?? config.training.seed,
                                   elements: elements, into: out)
        }
    }

    public var isFinished: Bool { step >= config.training.totalSteps }

    /// Seconds the last update spent reading its micro-batches (data loading / I/O latency; part of its wall time).
    public private(set) var dataSeconds = 0.0

    /// Runs one update and returns its metrics. An update whose loss or gradient norm is not
    /// finite is skipped on every rank (`StepMetrics.skipped`); the one that makes
    /// `fault_tolerance.max_skipped_steps` consecutive skips is counted too, then this throws
    /// `TrainingError` `.nonFiniteStreak`.
    ///
    /// fp16: the loss is multiplied by the dynamic loss scale before backward and the gradients
    /// divided by it before clipping. Non-finite gradients under a finite loss are an overflow
    /// (`StepMetrics.overflow`): skipped on every rank — the gradient norm is all-reduced, so all
    /// ranks see it — with the scale halved, and, as in PyTorch's GradScaler, not a divergence:
    /// they do not count towards `max_skipped_steps` (unless the scale has fallen below 2⁻²⁴,
    /// where nothing is left to lower). A non-finite loss is a divergence in every precision.
    public func trainStep() throws -> StepMetrics {
        let start = DispatchTime.now().uptimeNanoseconds
        let t = config.training
        let accumulation = t.gradientAccumulationSteps
        engine.beginStep()
        // The weights changed since the last step (an update, a restore or a resume): bf16 copies
        // are made again, once for all of this step's micro-batches.
        model.parametersChanged()
        // fp8: casts since the last step (an evaluation's) do not enter the step's amaxes, and the
        // output gradients' are taken without the 1 / accumulation backward starts from.
        model.discardFP8Amaxes()
        model.fp8GradientUnit = 1 / Float(accumulation)
        teacher?.model.discardFP8Amaxes()
        var lossSum: Double = 0, auxSum: Double = 0
        var expertCounts: [Int] = []
        dataSeconds = 0
        for local in 0..<accumulation {
            let micro = rank * accumulation + local
            let readStart = DispatchTime.now().uptimeNanoseconds
            let batch = sampler.batch(step: step, micro: micro)
            dataSeconds += Double(DispatchTime.now().uptimeNanoseconds - readStart) / 1e9
            let dropout = config.model.dropout > 0
                ? Transformer.DropoutContext(seed: t.seed, stream: Philox.stream(UInt64(step), UInt64(micro)))
                : nil
            let loss = try model.forward(inputs: batch.inputs, targets: batch.targets, batch: batch.batch,
                                         seqLen: batch.seqLen, dropout: dropout)
            let factor = backwardScaleHook?(step, local) ?? 1
            let scale = factor * (lossScaler?.scale ?? 1) / Float(accumulation)
            let ready = engine.gradientsReady(lastMicroBatch: local == accumulation - 1)
            if let teacher {
                // α · T² · KL / rows + (1 − α) · CE; the KL term's gradient joins the cross-entropy's in dLogits.
                try teacher.forward(inputs: batch.inputs, batch: batch.batch, seqLen: batch.seqLen)
                let rows = batch.batch * batch.seqLen, a = teacher.alpha, temperature = teacher.temperature
                var divergence = 0.0
                try model.backward(scale: scale * (1 - a), gradientsReady: ready) { dLogits, logits, n in
                    divergence = teacher.divergence(student: logits, rows: n, dLogits: dLogits, gradScale: scale * a * temperature / Float(n))
                }
                lossSum += Double(a) * Double(temperature * temperature) * divergence / Double(rows) + Double(1 - a) * Double(loss)
            } else {
                try model.backward(scale: scale, gradientsReady: ready)
                lossSum += Double(loss)
            }
            auxSum += Double(model.lastAuxLoss)
            if expertCounts.isEmpty { expertCounts = model.lastExpertCounts } else {
                for (e, n) in model.lastExpertCounts.enumerated() { expertCounts[e] += n }
            }
        }
        // `telemetry.layer_norms`: the norms of the embedding, each block and the head, in the same all-reduce.
        let normRegions = config.telemetry?.layerNorms == true ? model.table.regions : []
        let totals = try engine.reduce(lossSum: lossSum, auxSum: auxSum, counts: expertCounts.map(Double.init), normRegions: normRegions)
        try closeFP8Step()
        let loss = Float(totals.lossSum / Double(accumulation))
        let lr = t.schedule.rate(step: step, peak: t.optim.lr)
        // The totals are all-reduced, so every rank takes the same decision. A skipped update
        // changes nothing: no clipping, no AdamW, no gathers; the next beginStep zeroes the gradients.
        let scaleUsed = lossScaler?.scale
        var unscale: Float = 1, overflow = false
        if var scaler = lossScaler, loss.isFinite {
            switch scaler.update(gradientsFinite: totals.gradNorm.isFinite) {
            case .apply(let u): unscale = u
            case .skip: overflow = true
            }
            lossScaler = scaler
        }
        let gradNorm = totals.gradNorm * Double(unscale)
        let skipped = !loss.isFinite || !gradNorm.isFinite
        if skipped {
            skippedSteps += 1
            if !overflow || lossScaler!.scale < 0x1p-24 { nonFiniteStreak += 1 }
        } else {
            nonFiniteStreak = 0
            engine.update(lr: lr, t: step + 1 - skippedSteps, norm: gradNorm, maxNorm: t.optim.gradClip, unscale: unscale)
            try engine.parametersUpdated()
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var metrics = StepMetrics(step: step, loss: loss, auxLoss: Float(totals.auxSum / Double(accumulation)), lr: lr,
                                  gradNorm: gradNorm, tokens: worldSize * accumulation * t.microBatchSize * config.data.seqLen,
                                  seconds: seconds)
        metrics.skipped = skipped
        metrics.overflow = overflow
        metrics.lossScale = scaleUsed
        // The routing counts of every rank, summed (exactly: integers in doubles).
        let routed = totals.counts.reduce(0, +)
        if routed > 0 { metrics.expertLoad = totals.counts.map { $0 / routed } }
        // Under fp16 the gradients are scaled: the norms are unscaled as the global one is.
        if !normRegions.isEmpty { metrics.layerGradNorms = totals.regionNorms.map { $0 * Double(unscale) } }
        step += 1
        let limit = config.faultTolerance.maxSkippedSteps
        if skipped, nonFiniteStreak >= limit, !overflow || lossScaler!.scale < 0x1p-24 {
            throw TrainingError(.nonFiniteStreak, "step \(step): \(nonFiniteStreak) consecutive updates skipped for a non-finite loss or gradient norm (loss \(loss), grad_norm \(gradNorm)), fault_tolerance.max_skipped_steps is \(limit); lower training.lr, raise warmup_steps or lower grad_clip")
        }
        return metrics
    }

    /// fp8: closes the step of every amax history — the student's and an fp8 teacher's — with
    /// the largest amax of each tensor over all of the step's casts on all ranks: one max
    /// all-reduce of all of them. The next step casts with the scales this gives, the same on every
    /// rank, so N ranks equal one rank with N times the accumulation. Skipped steps record too.
    func closeFP8Step() throws {
        guard config.training.precision == .fp8 else { return }
        let own = model.fp8StepAmaxes, taught = teacher?.model.fp8StepAmaxes ?? []
        let local = (own + taught).map(Double.init)
        let reduced = try engine.queue.map { try $0.allReduceMaxScalars(local) } ?? local
        model.recordFP8Amaxes(reduced[..<own.count].map(Float.init))
        teacher?.model.recordFP8Amaxes(reduced[own.count...].map(Float.init))
    }

    /// fp8: the amax histories as a checkpoint records them (nil in other precisions).
    var fp8ScalingState: FP8ScalingState? {
        guard config.training.precision == .fp8 else { return nil }
        return FP8ScalingState(historyLength: model.fp8HistoryLength, student: model.fp8Histories, teacher: teacher?.model.fp8Histories)
    }

    /// fp8: the amax histories from a checkpoint's state (resized to `training.fp8_amax_history`,
    /// keeping the newest steps); without one (a checkpoint of another precision, or without a
    /// teacher's) the histories start empty, as a fresh run's.
    func restoreFP8Scaling(_ state: FP8ScalingState?) throws {
        guard config.training.precision == .fp8 else { return }
        for (m, histories) in [(model, state?.student), (teacher?.model, state?.teacher)] {
            guard let m else { continue }
            let empty = m.fp8Histories.mapValues { $0.map { _ in Float(0) } }
            do {
                try m.restoreFP8Histories(histories.map { state!.resized($0, to: m.fp8HistoryLength) } ?? empty)
            } catch let e as ModelError {
                throw TrainingError(.badInput, "the checkpoint's fp8_scaling does not fit this run: \(e.message)", cause: e)
            }
        }
    }

    /// `training.eval_interval` asks for an evaluation after the update just completed (every
    /// interval, and after the last update).
    public var evaluationDue: Bool {
        let interval = config.training.evalInterval
        return interval > 0 && heldOut != nil && step > 0 && (step % interval == 0 || isFinished)
    }

    /// This rank's share of the validation sums (`HeldOutEvaluation`); every rank of the job calls
    /// it at the same point, and the shares add up to the job's. Forward only, no dropout.
    public func evaluate() throws -> LanguageModelTotals {
        guard let heldOut else { throw TrainingError(.badInput, "no validation data (data.validation_fraction or data.validation_path)") }
        // The update changed the weights since the step's bf16 copies were made.
        model.parametersChanged()
        return try heldOut.run(model: model, rank: rank, worldSize: worldSize)
    }

    /// All parameters (gathered from the shards at stage 3; a collective then).
    public func fullParameters() throws -> FloatBuffer { try engine.fullParameters() }

    // MARK: checkpoints

    /// The elements of the flat buffers this rank writes to a checkpoint: its ring shard, at every
    /// stage (at stage 0 every rank holds everything and writes its slice), so the shards of all
    /// ranks tile the buffers and nothing is gathered onto one rank.
    public var checkpointShard: Range<Int> { partitionPlan.shardRange(rank) }

    /// The rank's shard of the current state, copied to host memory (the synchronous part of a
    /// save or a replica refresh). Every part is allocated with the largest shard's size, so that
    /// neighbours' replicas have equal sizes on the wire and snapshot buffers are recycled;
    /// `storage` (3 · largest shard elements) puts it there instead of a pooled buffer.
    public func snapshot(into storage: FloatBuffer? = nil) -> ShardSnapshot {
        let s = checkpointShard
        let snap = emptySnapshot(of: rank, step: step, samplesConsumed: sampler.position(step: step), skippedSteps: skippedSteps,
                                 lossScale: lossScaleState, fp8Scaling: fp8ScalingState, storage: storage)
        // Parameters: the model's own buffer, or the rank's shard at stage 3 (which is `s`).
        let parameters = engine.stage.shardsParameters ? engine.parameterShard.baseAddress! : model.parameters.pointer + s.lowerBound
        // Moments: the optimizer's shard is `s` at stages 1–3 and everything at stage 0.
        let o = engine.optimizer, offset = s.lowerBound - o.shard.lowerBound
        let parts = [(parameters, snap.parameters.baseAddress!), (o.expAvg.pointer + offset, snap.expAvg.baseAddress!),
                     (o.expAvgSq.pointer + offset, snap.expAvgSq.baseAddress!)]
        // Safe: the copies write disjoint ranges of the snapshot and only read the state.
        nonisolated(unsafe) let copies = parts
        pool.parallelFor(s.count, minChunk: 1 << 18) { r in
            for (from, to) in copies { (to + r.lowerBound).update(from: from + r.lowerBound, count: r.count) }
        }
        return snap
    }

    /// Restores the state from this rank's shard snapshot of the same world size (an in-memory
    /// replica: no file is read): every rank calls it with its own shard, and the parts a rank
    /// keeps beyond its shard (all parameters at stages 0–2, all moments at stage 0) are
    /// all-gathered from the other ranks' shards.
    public func restore(from snap: ShardSnapshot) throws {
        guard snap.worldSize == worldSize, snap.rank == rank, snap.start == checkpointShard.lowerBound, snap.count == checkpointShard.count else {
            throw TrainingError(.runtime, "the replica of rank \(snap.rank) of \(snap.worldSize) does not fit rank \(rank) of \(worldSize)")
        }
        let full = worldSize > 1 ? FloatBuffer(count: model.table.count) : nil
        /// `part` (this rank's shard) written to `out`, which holds `elements` of the flat buffer.
        func place(_ part: UnsafeMutableBufferPointer<Float>, elements: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
            if elements == checkpointShard {
                out.update(from: part.baseAddress!, count: part.count)
                return
            }
            guard let full, let queue = engine.queue else { preconditionFailure("a partial restore needs the ring") }
            (full.pointer + snap.start).update(from: part.baseAddress!, count: part.count)
            try queue.allGather(full.buffer)
            out.update(from: full.pointer + elements.lowerBound, count: elements.count)
        }
        try engine.loadParameters { elements, out in try place(snap.parameters, elements: elements, into: out) }
        try engine.loadOptimizerState { first, elements, out in
            try place(first ? snap.expAvg : snap.expAvgSq, elements: elements, into: out)
        }
        step = snap.step
        skippedSteps = snap.skippedSteps
        restoreLossScale(snap.lossScale)
        try restoreFP8Scaling(snap.fp8Scaling)
        sampler.origin = (snap.step, snap.dataCursor.samplesConsumed)
    }

    /// fp16: the loss scaler's state as a checkpoint records it (nil in other precisions).
    var lossScaleState: LossScaleState? { lossScaler.map { LossScaleState(scale: $0.scale, cleanSteps: $0.cleanSteps) } }

    /// fp16: the loss scaler from a checkpoint's state; a checkpoint without one (written in
    /// another precision) starts from `training.loss_scale`.
    func restoreLossScale(_ state: LossScaleState?) {
        guard let scaler = lossScaler else { return }
        let t = config.training
        lossScaler = state.map { DynamicLossScaler(scale: $0.scale, growthInterval: scaler.growthInterval, cleanSteps: min($0.cleanSteps, scaler.growthInterval - 1)) }
            ?? DynamicLossScaler(scale: Float(t.lossScale), growthInterval: t.lossScaleGrowthInterval)
    }

    /// Restores the state after update `step` from shards held in memory by the ranks' workers
    /// (in-memory replicas), with the same world size: `local(r)` is shard r if this rank's worker
    /// holds it. Each `transfers` entry is a shard whose rank's worker does not hold it: its `root`
    /// broadcasts it on the ring. Every rank calls this, with the same transfers.
    public func restore(step: Int, transfers: [(rank: Int, root: Int)], local: (Int) -> ShardSnapshot?) throws {
        let own = local(rank)
        // The job's data cursor and skipped count are the same in every shard: a rank that holds none takes them from the others.
        let known = own ?? transfers.compactMap { local($0.rank) }.first
        // fp8: the histories travel flattened, in this run's shape (a replica's is the same run's).
        let fp8Shape = fp8ScalingState
        let fp8Flat = fp8Shape.map { (known?.fp8Scaling ?? $0).flattened } ?? []
        var meta = [Double(known?.dataCursor.samplesConsumed ?? 0), Double(known?.skippedSteps ?? 0), known == nil ? 0 : 1,
                    Double(known?.lossScale?.scale ?? 0), Double(known?.lossScale?.cleanSteps ?? 0)]
            + fp8Flat.map { known == nil ? 0 : Double($0) }
        if let queue = engine.queue { meta = try queue.allReduceScalars(meta) }
        guard meta[2] > 0 else { throw TrainingError(.runtime, "no rank holds a replica of step \(step)") }
        let samples = Int((meta[0] / meta[2]).rounded()), skipped = Int((meta[1] / meta[2]).rounded())
        // The loss scale is a power of two, exact through the mean of equal values.
        let lossScale = meta[3] > 0 ? LossScaleState(scale: Float(meta[3] / meta[2]), cleanSteps: Int((meta[4] / meta[2]).rounded())) : nil
        // Equal floats summed over the holders and divided by their count: exact in doubles.
        let fp8Scaling = fp8Shape?.filled(with: meta[5...].map { Float($0 / meta[2]) })
        var mine = own
        for t in transfers {
            let buffer: ShardSnapshot
            if rank == t.root {
                guard let held = local(t.rank) else {
                    throw TrainingError(.runtime, "rank \(rank) was to send the replica of rank \(t.rank) at step \(step) but does not hold it")
                }
                buffer = held
            } else {
                buffer = emptySnapshot(of: t.rank, step: step, samplesConsumed: samples, skippedSteps: skipped, lossScale: lossScale,
                                       fp8Scaling: fp8Scaling)
            }
            try engine.queue?.broadcast(buffer.storage.buffer, root: t.root)
            if t.rank == rank { mine = buffer }
        }
        guard let mine else { throw TrainingError(.runtime, "rank \(rank) has no replica of its shard at step \(step)") }
        try restore(from: mine)
    }

    /// An empty snapshot of rank `r`'s shard after `step` (its buffer sized for the largest shard),
    /// with the job's data cursor and schedule there.
    func emptySnapshot(of r: Int, step: Int, samplesConsumed: Int, skippedSteps: Int, lossScale: LossScaleState? = nil,
                       fp8Scaling: FP8ScalingState? = nil, storage: FloatBuffer? = nil) -> ShardSnapshot {
        let s = partitionPlan.shardRange(r), t = config.training
        return ShardSnapshot(step: step, rank: r, worldSize: worldSize, start: s.lowerBound, count: s.count,
                             capacity: partitionPlan.largestShardCount, seed: t.seed,
                             dataCursor: DataCursor(samplesConsumed: samplesConsumed,
                                                    globalBatch: worldSize * t.gradientAccumulationSteps * t.microBatchSize, seed: t.seed),
                             schedule: scheduleState(at: step), skippedSteps: skippedSteps, lossScale: lossScale,
                             fp8Scaling: fp8Scaling, storage: storage)
    }

    /// The learning-rate schedule as a checkpoint records it, before update `step`.
    func scheduleState(at step: Int) -> ScheduleState {
        let t = config.training
        return ScheduleState(kind: t.optim.schedule, peakLR: t.optim.lr, warmupSteps: t.optim.warmupSteps, totalSteps: t.totalSteps,
                             numCycles: t.optim.numCycles, nextLR: t.schedule.rate(step: step, peak: t.optim.lr))
    }

    /// Writes a checkpoint of a rank training alone into the checkpoint directory `directory`
    /// (its one shard, then the manifest: `CheckpointStore.commit`), keeping the newest
    /// `training.checkpoint_keep`. Under a cluster every rank writes its shard and the
    /// coordinator commits (`Device`).
    @discardableResult
    public func saveCheckpoint(in directory: URL) throws -> URL {
        precondition(worldSize == 1, "with several ranks the coordinator commits the checkpoint")
        let store = CheckpointStore(directory: directory)
        let record = try snapshot().write(into: store.pendingFolder(step: step))
        let manifest = try CheckpointManifest(config: config, stage: engine.stage, table: model.table, shards: [record],
                                              extraFiles: [store.writeHuggingFaceConfig(config.model, step: step),
                                                           store.writeTokenizer(from: config.data.tokenizerFile, step: step)].compactMap { $0 })
        return try store.commit(manifest, keep: config.training.checkpointKeep)
    }

    /// Restores weights, optimizer state, step, skipped updates and the data position from a
    /// checkpoint (a step folder, or a checkpoint directory whose `latest` names one), written
    /// with any number of ranks at any ZeRO stage: the rank reads only the byte ranges of the
    /// shard files its own state needs, verifying their checksums. The model config must match.
    /// Every rank of a cluster calls it (stage 3 gathers afterwards).
    public func resume(from url: URL) throws {
        let reader = try CheckpointReader<TrainConfig>(url)
        try resume(from: reader)
    }

    public func resume(from reader: CheckpointReader<TrainConfig>) throws {
        let m = reader.manifest
        guard m.config.model == config.model else {
            throw TrainingError(.badInput, "checkpoint \(reader.folder.path) was written for a different model config (\(m.config.model.numLayers) layers, hidden \(m.config.model.hiddenSize)); this run has \(config.model.numLayers) layers, hidden \(config.model.hiddenSize)")
        }
        try reader.requireLayout(of: model.table)
        try engine.loadParameters { elements, out in try reader.read(.parameters, elements: elements, into: out) }
        try engine.loadOptimizerState { first, elements, out in
            try reader.read(first ? .expAvg : .expAvgSq, elements: elements, into: out)
        }
        step = m.step
        skippedSteps = m.skippedSteps
        restoreLossScale(m.lossScale)
        try restoreFP8Scaling(m.fp8Scaling)
        sampler.origin = (m.step, m.dataCursor.samplesConsumed)
    }
}

extension CheckpointManifest where Config == TrainConfig {
    /// The manifest of a checkpoint whose shards `shards` (one per rank, any order) are written:
    /// the job's config, the stage in effect, the flat-buffer layout, rank 0's data cursor and schedule.
    public init(config: TrainConfig, stage: ZeroStage, table: ParameterTable, shards: [ShardRecord], extraFiles: [CheckpointFile]) throws {
        let sorted = shards.sorted { $0.rank < $1.rank }
        guard let first = sorted.first, sorted.map(\.rank) == Array(0..<sorted.count), Set(sorted.map(\.step)).count == 1 else {
            throw TrainingError(.runtime, "a checkpoint needs one shard per rank of the same step; got ranks \(sorted.map(\.rank)) of steps \(Set(sorted.map(\.step)).sorted())")
        }
        self.init(step: first.step, worldSize: sorted.count, zeroStage: stage.rawValue,
                  config: config, tensors: TensorLayout.layouts(of: table),
                  dataCursor: first.dataCursor, schedule: first.schedule, skippedSteps: first.skippedSteps, lossScale: first.lossScale,
                  fp8Scaling: first.fp8Scaling,
                  files: sorted.map(\.file) + extraFiles)
    }
}
