import Checkpoint
import Foundation
import Model
import Tensor
import Zero

/// A distillation teacher (`training.distillation`): a model loaded from a ZeroTrain checkpoint
/// or a Hugging Face folder, run forward only (in the run's `training.precision`), whose logits
/// are made a block of rows at a time (`DistillationLoss.chunkRows`) — never the whole
/// micro-batch's (B·T, V) at once. Sharded (`training.distillation.shard`), the rank keeps only
/// its 1/N of the teacher's parameters and the forward gathers each region from the ranks just
/// before use, as the student's stage 3 does (`ShardedForwardParameters`).
public final class Teacher {
    public let model: Transformer
    /// Sharded: the rank's part of the teacher's parameters and the gathers (nil: the whole teacher here).
    public let sharded: ShardedForwardParameters?
    /// Sharded: regions gathered at once (`zero.prefetch_depth` + 1), whose weight copies the
    /// rank holds in mixed precision.
    private let regionsGatheredAtOnce: Int
    public let temperature: Float
    public let alpha: Float
    /// Rows of logits made at once.
    public let chunkRows: Int
    private let chunk: FloatBuffer

    public init(config: DistillationConfig, student: ModelConfig, seqLen: Int, precision: Precision, pool: ThreadPool,
                chunkRows: Int? = nil, fp8HistoryLength: Int = 16, sharding: Sharding? = nil) throws {
        let (teacherConfig, reader) = try Self.open(config, student: student, seqLen: seqLen)
        let url = URL(fileURLWithPath: config.teacher)
        model = try Transformer(config: teacherConfig, pool: pool, ownsParameters: sharding == nil, precision: precision,
                                fp8HistoryLength: fp8HistoryLength)
        let table = model.table
        func load(_ elements: Range<Int>, _ out: UnsafeMutablePointer<Float>) throws {
            if let reader {
                try reader.read(.parameters, elements: elements, into: out)
            } else {
                try CheckpointStore.huggingFaceParameters(url, table: table, elements: elements, into: out)
            }
        }
        if let sharding {
            sharded = try ShardedForwardParameters(table: table, config: sharding.zero, queue: sharding.queue, ledger: sharding.ledger,
                                                   name: "teacher-params", load: load)
            model.residency = sharded
            regionsGatheredAtOnce = sharding.zero.regionsGatheredAtOnce
        } else {
            try load(0..<table.count, model.parameters.pointer)
            sharded = nil
            regionsGatheredAtOnce = 0
        }
        temperature = Float(config.temperature)
        alpha = Float(config.alpha)
        self.chunkRows = max(1, chunkRows ?? DistillationLoss.chunkRows(vocab: teacherConfig.vocabSize))
        chunk = FloatBuffer(count: self.chunkRows * teacherConfig.vocabSize)
    }

    /// Where a sharded teacher's parameters live: the job's collective queue (the student's), the
    /// ZeRO settings of its gathers (prefetch, persistence, offload tier) and the rank's ledger, into
    /// which the gathered regions are entered while held.
    public struct Sharding {
        public var queue: CollectiveQueue
        public var zero: ZeroConfig
        public var ledger: MemoryLedger

        public init(queue: CollectiveQueue, zero: ZeroConfig, ledger: MemoryLedger) {
            self.queue = queue
            self.zero = zero
            self.ledger = ledger
        }
    }

    /// Device bytes the teacher holds besides what the ledger enters as it goes, and one block of
    /// logits (its forward-only activations are not counted). Whole: its fp32 weights and their
    /// low-precision copy in mixed precision. Sharded: the rank's fp32 shard (unless offloaded)
    /// and the copies of the regions gathered at once (the gathered fp32 regions themselves, and
    /// the small regions kept whole, the ledger enters as they are allocated).
    public var bytes: Int {
        guard let sharded else { return model.table.count * (4 + model.precision.weightCopyBytes) + chunk.count * 4 }
        let shard = sharded.shardTier == .device ? 4 * sharded.shardRange.count : 0
        return shard + model.precision.weightCopyBytes * regionsGatheredAtOnce * model.table.largestRegion + chunk.count * 4
    }

    /// Checks the teacher without loading its weights: it exists, and its vocabulary and length
    /// fit the student. Returns its model config and, for a ZeroTrain checkpoint, its reader
    /// (nil: a Hugging Face folder). A coordinator calls it before it starts a job.
    @discardableResult
    public static func open(_ config: DistillationConfig, student: ModelConfig, seqLen: Int) throws -> (ModelConfig, CheckpointReader<TrainConfig>?) {
        try config.validate()
        let url = URL(fileURLWithPath: config.teacher)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw TrainingError(.badInput, "training.distillation.teacher: \(config.teacher) is not a directory (a checkpoint or a Hugging Face folder)")
        }
        let isHuggingFace = fm.fileExists(atPath: url.appendingPathComponent("config.json").path)
            && !fm.fileExists(atPath: url.appendingPathComponent("manifest.json").path)
            && !fm.fileExists(atPath: url.appendingPathComponent("latest").path)
        let teacherConfig: ModelConfig
        let reader: CheckpointReader<TrainConfig>?
        if isHuggingFace {
            teacherConfig = try CheckpointStore.huggingFaceConfig(url)
            reader = nil
        } else {
            let r = try CheckpointReader<TrainConfig>(url)
            teacherConfig = r.manifest.config.model
            reader = r
        }
        guard teacherConfig.vocabSize == student.vocabSize else {
            throw TrainingError(.badInput, "training.distillation.teacher: \(config.teacher) has a vocabulary of \(teacherConfig.vocabSize) tokens, the student \(student.vocabSize); teacher and student must share one vocabulary")
        }
        guard teacherConfig.maxSeqLen >= seqLen else {
            throw TrainingError(.badInput, "training.distillation.teacher: \(config.teacher) takes at most \(teacherConfig.maxSeqLen) positions, data.seq_len is \(seqLen)")
        }
        return (teacherConfig, reader)
    }

    /// Runs the teacher on a micro-batch's inputs (up to its final norm).
    public func forward(inputs: [Int32], batch: Int, seqLen: Int) throws {
        try model.forwardHidden(inputs: inputs, batch: batch, seqLen: seqLen)
    }

    /// Σ over the rows of KL(p_t ‖ p_s) against the student's logits (rows, V) of the same
    /// micro-batch; adds `gradScale` · (p_s − p_t) into `dLogits` (see `DistillationLoss`).
    public func divergence(student: UnsafePointer<Float>, rows: Int, dLogits: UnsafeMutablePointer<Float>?, gradScale: Float) -> Double {
        let v = model.config.vocabSize
        var total: Double = 0
        for start in stride(from: 0, to: rows, by: chunkRows) {
            let r = min(chunkRows, rows - start)
            model.headLogits(rows: start..<(start + r), into: chunk.pointer)
            total += DistillationLoss.forward(student: student + start * v, teacher: chunk.pointer, rows: r, vocab: v,
                                              temperature: temperature, dLogits: dLogits.map { $0 + start * v }, gradScale: gradScale,
                                              pool: model.pool)
        }
        return total
    }
}
