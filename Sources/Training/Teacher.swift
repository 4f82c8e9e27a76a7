import Checkpoint
import Foundation
import Model
import Tensor

/// A distillation teacher (`training.distillation`): a model loaded from a ZeroTrain checkpoint
/// or a Hugging Face folder, run forward only (in the run's `training.precision`), whose logits
/// are made a block of rows at a time (`DistillationLoss.chunkRows`) — never the whole
/// micro-batch's (B·T, V) at once.
public final class Teacher {
    public let model: Transformer
    public let temperature: Float
    public let alpha: Float
    /// Rows of logits made at once.
    public let chunkRows: Int
    private let chunk: FloatBuffer

    public init(config: DistillationConfig, student: ModelConfig, seqLen: Int, precision: Precision, pool: ThreadPool,
                chunkRows: Int? = nil, fp8HistoryLength: Int = 16) throws {
        let (teacherConfig, reader) = try Self.open(config, student: student, seqLen: seqLen)
        let url = URL(fileURLWithPath: config.teacher)
        model = try Transformer(config: teacherConfig, pool: pool, precision: precision, fp8HistoryLength: fp8HistoryLength)
        if let reader {
            try reader.read(.parameters, elements: 0..<model.table.count, into: model.parameters.pointer)
        } else {
            try CheckpointStore.huggingFaceParameters(url, table: model.table, elements: 0..<model.table.count, into: model.parameters.pointer)
        }
        temperature = Float(config.temperature)
        alpha = Float(config.alpha)
        self.chunkRows = max(1, chunkRows ?? DistillationLoss.chunkRows(vocab: teacherConfig.vocabSize))
        chunk = FloatBuffer(count: self.chunkRows * teacherConfig.vocabSize)
    }

    /// Bytes the teacher holds: fp32 weights, their low-precision copy in mixed precision, and one block of
    /// logits (its forward-only activations are not counted).
    public var bytes: Int {
        model.table.count * (4 + model.precision.weightCopyBytes) + chunk.count * 4
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
