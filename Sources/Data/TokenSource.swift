import Checkpoint
import Foundation
import Tensor

/// Where a run's tokens come from, already tokenised.
public enum TokenSource: Sendable {
    /// One long token stream, cut into windows of seq_len + 1.
    case stream([Int32])
    /// Pre-batched tokens [steps, micro, batch, seq_len + 1], replayed in order.
    case batches(tokens: [Int32], steps: Int, micro: Int, batch: Int, width: Int)
    /// Token shards read in place, in file order, or — under `data.curriculum` — sorted by
    /// difficulty with the stages as prefixes of the stream.
    case mapped(MappedTokens, plan: CurriculumPlan?)

    /// Loads the configured source, text encoded with the configured tokenizer (`data.tokenizer`,
    /// byte-level by default). Files that are missing, empty or malformed are errors.
    public static func load(_ config: DataConfig) throws -> TokenSource {
        try config.validate()
        let tokenizer = try config.modelTokenizer()
        switch config.source {
        case "builtin":
            return .stream(tokenizer.encode(BuiltinCorpus.text()))
        case "text":
            let text = try readText(config.path!)
            return .stream(tokenizer.encode(text))
        case "jsonl":
            let text = try readText(config.path!)
            var parts: [String] = []
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                guard let obj = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                    throw DataError(.malformed, "\(config.path!):\(n + 1): not a JSON object")
                }
                guard let t = obj["text"] as? String else {
                    throw DataError(.malformed, "\(config.path!):\(n + 1): no string field \"text\"")
                }
                parts.append(t)
            }
            guard !parts.isEmpty else { throw DataError(.empty, "\(config.path!): no records") }
            return .stream(tokenizer.encode(parts.joined(separator: "\n")))
        case "shards":
            // Memory-mapped shards (documents already end in EOS), read in place.
            let shards = try TokenShard.files(at: config.path!, split: config.split ?? "train").map { try TokenShard(path: $0) }
            guard shards.contains(where: { $0.tokenCount > 0 }) else {
                throw DataError(.empty, "\(config.path!): the \(config.split ?? "train") shards hold no tokens")
            }
            guard let curriculum = config.curriculum else { return .mapped(MappedTokens(shards: shards), plan: nil) }
            var lengths: [Int] = [], difficulty: [Double] = []
            for shard in shards {
                let scores = curriculum.difficulty == "score"
                    ? try DifficultyFile.read(path: DifficultyFile.path(forShard: shard.path), documents: shard.documentCount) : nil
                for d in 0..<shard.documentCount {
                    let n = shard.offset(document: d + 1) - shard.offset(document: d)
                    lengths.append(n)
                    difficulty.append(scores?[d] ?? Double(n))
                }
            }
            let (order, plan) = try CurriculumPlan.sort(difficulty: difficulty, lengths: lengths, stages: curriculum.stages, seqLen: config.seqLen)
            return .mapped(MappedTokens(shards: shards, documentOrder: order), plan: plan)
        default:
            let file = try SafeTensorsFile(contentsOf: URL(fileURLWithPath: config.path!))
            if let e = file.entry("tokens"), e.shape.count == 1 {
                // A tokenised stream (what the coordinator writes for its workers).
                guard e.count > 0 else { throw DataError(.empty, "\(config.path!): tokens is empty") }
                return .stream(try file.int32s("tokens"))
            }
            guard let e = file.entry("tokens"), e.shape.count == 4 else {
                throw DataError(.malformed, "\(config.path!): expected an int32 tensor tokens[step, micro, batch, seq_len+1] or a stream tokens[n]")
            }
            guard e.count > 0 else { throw DataError(.empty, "\(config.path!): tokens is empty") }
            return .batches(tokens: try file.int32s("tokens"), steps: e.shape[0], micro: e.shape[1], batch: e.shape[2], width: e.shape[3])
        }
    }

    private static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(.unreadable, "cannot read data file \(path)")
        }
        guard !data.isEmpty else { throw DataError(.empty, "data file \(path) is empty") }
        return String(decoding: data, as: UTF8.self)
    }

    public var tokenCount: Int {
        switch self {
        case .stream(let t): t.count
        case .batches(let t, _, _, _, _): t.count
        case .mapped(let t, _): t.count
        }
    }
}
