import Evaluation
import Model

/// Validation loss, perplexity and next-token accuracy of a model on held-out tokens.
///
/// The tokens are cut into windows of seq_len + 1 (stride seq_len, as training cuts its stream);
/// the first `sequences` windows are evaluated, in micro-batches of `batchSize` rows. With N ranks,
/// rank r takes batches r, r + N, r + 2N, …; every rank runs the same number of forward passes
/// (a ZeRO-3 forward gathers parameters with every rank), a batch past the end is made of window 0
/// and not counted, and the ranks' sums add up to exactly the windows of one rank's evaluation.
public struct HeldOutEvaluation: Sendable {
    public let tokens: [Int32]
    public let seqLen: Int
    public let batchSize: Int
    /// Windows evaluated.
    public let sequences: Int

    /// `limit` 0 = every window.
    public init(tokens: [Int32], seqLen: Int, batchSize: Int, limit: Int) throws {
        let windows = (tokens.count - 1) / seqLen
        guard windows >= 1 else {
            throw TrainingError(.badInput, "the validation data has \(tokens.count) tokens; one sequence needs seq_len + 1 = \(seqLen + 1)")
        }
        self.tokens = tokens
        self.seqLen = seqLen
        self.batchSize = batchSize
        sequences = limit > 0 ? min(limit, windows) : windows
    }

    /// Forward passes each of `worldSize` ranks runs.
    public func batches(worldSize: Int) -> Int {
        let total = (sequences + batchSize - 1) / batchSize
        return (total + worldSize - 1) / worldSize
    }

    /// The sums over this rank's share. Forward only: no gradients, the model's parameters unchanged.
    public func run(model: Transformer, rank: Int = 0, worldSize: Int = 1) throws -> LanguageModelTotals {
        var totals = LanguageModelTotals()
        let v = model.config.vocabSize
        for k in 0..<batches(worldSize: worldSize) {
            let first = (k * worldSize + rank) * batchSize
            var inputs: [Int32] = [], targets: [Int32] = []
            inputs.reserveCapacity(batchSize * seqLen)
            targets.reserveCapacity(batchSize * seqLen)
            for row in 0..<batchSize {
                let w = first + row < sequences ? first + row : 0
                inputs += tokens[(w * seqLen)..<(w * seqLen + seqLen)]
                targets += tokens[(w * seqLen + 1)..<(w * seqLen + seqLen + 1)]
            }
            try model.forward(inputs: inputs, targets: nil, batch: batchSize, seqLen: seqLen)
            let counted = max(0, min(batchSize, sequences - first))
            totals.add(logits: model.logits, targets: targets[0..<(counted * seqLen)], vocab: v)
        }
        return totals
    }
}
