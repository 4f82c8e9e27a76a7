import Checkpoint
import Data
import Foundation
import Model
import Tensor

/// The reference model of `zerotrain data prepare` (`reference_model:`): a ZeroTrain checkpoint
/// that scores documents by perplexity, exp(mean next-token cross-entropy), over windows of the
/// model's `max_seq_len` tokens (each window predicts its own tokens after the first).
public final class ReferenceModelScorer: DocumentScorer {
    public let model: Transformer

    public init(checkpoint: String, threads: Int) throws {
        let reader = try CheckpointReader<TrainConfig>(URL(fileURLWithPath: checkpoint))
        model = try Transformer(config: reader.manifest.config.model, pool: ThreadPool(threads: threads))
        try reader.read(.parameters, elements: 0..<model.table.count, into: model.parameters.pointer)
        model.parametersChanged()
    }

    public func perplexities(_ documents: [[Int32]]) throws -> [Double] {
        let window = model.config.maxSeqLen + 1, vocab = model.config.vocabSize
        return try documents.map { doc in
            if let bad = doc.first(where: { $0 < 0 || Int($0) >= vocab }) {
                throw TrainingError(.badInput, "reference_model: token \(bad) is outside the model's vocabulary of \(vocab) (was it trained with this tokenizer?)")
            }
            guard doc.count >= 2 else { return 1 }
            var nll = 0.0, count = 0
            var start = 0
            while start + 1 < doc.count {
                let piece = Array(doc[start..<min(doc.count, start + window)])
                let n = piece.count - 1
                let loss = try model.forward(inputs: Array(piece.dropLast()), targets: Array(piece.dropFirst()), batch: 1, seqLen: n)
                nll += Double(loss) * Double(n)
                count += n
                start += n
            }
            return exp(nll / Double(count))
        }
    }
}
