/// A reference language model that scores documents for `zerotrain data prepare`: its perplexity
/// drives the perplexity filter (`max_perplexity`, as CCNet filters with KenLM) and the
/// curriculum's `difficulty: perplexity`, and its embeddings the semantic dedup of `dedup.semantic.embedding: model`. The implementation runs a ZeroTrain checkpoint
/// (Training's `ReferenceModelScorer`); Data only sees this protocol.
public protocol DocumentScorer {
    /// The perplexity of each document, given as token ids of the pipeline's tokenizer.
    func perplexities(_ documents: [[Int32]]) throws -> [Double]
    /// An embedding of each document: its final hidden states, mean-pooled (semantic dedup).
    func embeddings(_ documents: [[Int32]]) throws -> [[Float]]
}
