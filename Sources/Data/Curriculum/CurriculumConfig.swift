import Common

/// One stage of a curriculum: the documents with difficulty ≤ `max_difficulty` (all of them when
/// it is absent), open from update step `opens_at` on.
public struct CurriculumStage: ConfigSection, Equatable {
    public var maxDifficulty: Double?
    public var opensAt = 0
    public init() {}
    public init(maxDifficulty: Double?, opensAt: Int) {
        self.maxDifficulty = maxDifficulty
        self.opensAt = opensAt
    }
    public static let fields: [ConfigField<Self>] = [.init("max_difficulty", \.maxDifficulty), .init("opens_at", \.opensAt)]
}

/// `data.curriculum:` (spec §6.1): easy documents first. Every document of the shards gets a
/// difficulty — its length in tokens (`length`), or the score `zerotrain data prepare` stored
/// beside the shards (`score`: a JSONL field such as "difficulty", or the perplexity of a
/// reference model; see docs/data.md) — and the sampler draws only from the stages open at a step.
public struct CurriculumConfig: ConfigSection, Equatable {
    /// "length" or "score".
    public var difficulty = "length"
    /// In order of opening; the first opens at step 0, and each holds the documents of the one
    /// before (its `max_difficulty` is larger, or absent: every document).
    public var stages: [CurriculumStage] = []
    public init() {}
    public static let fields: [ConfigField<Self>] = [.init("difficulty", \.difficulty), .init("stages", \.stages)]

    public func validate(path p: String) throws {
        guard ["length", "score"].contains(difficulty) else {
            throw DataError(.invalidConfig, "\(p).difficulty: must be length or score, got \"\(difficulty)\"")
        }
        guard let first = stages.first else { throw DataError(.invalidConfig, "\(p).stages: name at least one stage") }
        guard first.opensAt == 0 else { throw DataError(.invalidConfig, "\(p).stages[0].opens_at: the first stage must open at step 0, got \(first.opensAt)") }
        for (k, pair) in zip(stages, stages.dropFirst()).enumerated() {
            guard pair.1.opensAt > pair.0.opensAt else {
                throw DataError(.invalidConfig, "\(p).stages[\(k + 1)].opens_at: stages must open at increasing steps (\(pair.1.opensAt) after \(pair.0.opensAt))")
            }
            guard let before = pair.0.maxDifficulty else {
                throw DataError(.invalidConfig, "\(p).stages[\(k)].max_difficulty: only the last stage may leave it out (it holds every document)")
            }
            if let now = pair.1.maxDifficulty, now <= before {
                throw DataError(.invalidConfig, "\(p).stages[\(k + 1)].max_difficulty: must grow from stage to stage (\(now) after \(before))")
            }
        }
    }
}

/// A curriculum as the sampler uses it: the token stream holds the documents sorted by difficulty
/// (stable: file order among equals), and stage k is the prefix of `tokens[k]` tokens, open from
/// step `opensAt[k]`.
public struct CurriculumPlan: Sendable, Equatable {
    public let opensAt: [Int]
    public let tokens: [Int]
    public init(opensAt: [Int], tokens: [Int]) {
        precondition(opensAt.count == tokens.count && !opensAt.isEmpty)
        self.opensAt = opensAt
        self.tokens = tokens
    }

    /// The stage open at update `step`: the last one that opened at or before it.
    public func stage(atStep step: Int) -> Int { (opensAt.lastIndex { $0 <= step }) ?? 0 }

    /// The documents' order (easiest first, harder than the last stage left out) and the stages'
    /// token counts, from each document's difficulty and length in tokens (file order).
    public static func sort(difficulty: [Double], lengths: [Int], stages: [CurriculumStage], seqLen: Int) throws -> (order: [Int], plan: CurriculumPlan) {
        precondition(lengths.count == difficulty.count)
        let sorted = difficulty.indices.sorted { (difficulty[$0], $0) < (difficulty[$1], $1) }
        var order: [Int] = [], ends: [Int] = []
        order.reserveCapacity(sorted.count)
        var total = 0, k = 0
        for i in sorted {
            while k < stages.count, let cap = stages[k].maxDifficulty, difficulty[i] > cap {
                ends.append(total)
                k += 1
            }
            if k == stages.count { break }  // harder than the last stage: never drawn
            order.append(i)
            total += lengths[i]
        }
        while ends.count < stages.count { ends.append(total) }
        for (s, end) in ends.enumerated() where end < seqLen + 1 {
            throw DataError(.tooShort, "data.curriculum.stages[\(s)]: holds \(end) tokens; one sequence needs data.seq_len + 1 = \(seqLen + 1) (raise its max_difficulty or lower seq_len)")
        }
        return (order, CurriculumPlan(opensAt: stages.map(\.opensAt), tokens: ends))
    }
}
