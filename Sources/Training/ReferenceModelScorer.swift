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

    func check(_ doc: [Int32]) throws {
        let vocab = model.config.vocabSize
        if let bad = doc.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw TrainingError(.badInput, "reference_model: token \(bad) is outside the model's vocabulary of \(vocab) (was it trained with this tokenizer?)")
        }
    }

    /// Mean of the final hidden states over every position of the document (windows of `max_seq_len`).
    public func embeddings(_ documents: [[Int32]]) throws -> [[Float]] {
        let window = model.config.maxSeqLen, c = model.config.hiddenSize
        return try documents.map { doc in
            try check(doc)
            var sum = [Double](repeating: 0, count: c)
            var start = 0
            while start < doc.count {
                let piece = Array(doc[start..<min(doc.count, start + window)])
                try model.forward(inputs: piece, targets: nil, batch: 1, seqLen: piece.count)
                let h = model.finalHidden
                for t in 0..<piece.count { for j in 0..<c { sum[j] += Double(h[t * c + j]) } }
                start += piece.count
            }
            return sum.map { Float($0 / Double(max(1, doc.count))) }
        }
    }

    public func perplexities(_ documents: [[Int32]]) throws -> [Double] {
        let window = model.config.maxSeqLen + 1
        return try documents.map { doc in
            try check(doc)
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
