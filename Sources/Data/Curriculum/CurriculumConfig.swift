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
    /// The int32 tensors of the coordinator's token file that carry the plan beside `tokens`.
    public static let tokensKey = "curriculum_stage_tokens", opensAtKey = "curriculum_opens_at"
    public init(opensAt: [Int], tokens: [Int]) {
        precondition(opensAt.count == tokens.count && !opensAt.isEmpty)
        self.opensAt = opensAt
        self.tokens = tokens
    }

    /// The stage open at update `step`: the last one that opened at or before it.
    public func stage(atStep step: Int) -> Int { (opensAt.lastIndex { $0 <= step }) ?? 0 }

    /// Sorts documents by difficulty and cuts the stages: `documents` are token arrays in file
    /// order, `difficulty` one value per document.
    public static func build(documents: [[Int32]], difficulty: [Double], stages: [CurriculumStage], seqLen: Int) throws -> (stream: [Int32], plan: CurriculumPlan) {
        precondition(documents.count == difficulty.count)
        let order = documents.indices.sorted { (difficulty[$0], $0) < (difficulty[$1], $1) }
        var stream: [Int32] = []
        stream.reserveCapacity(documents.reduce(0) { $0 + $1.count })
        var ends: [Int] = []
        var k = 0
        for i in order {
            while k < stages.count, let cap = stages[k].maxDifficulty, difficulty[i] > cap {
                ends.append(stream.count)
                k += 1
            }
            if k == stages.count { break }  // harder than the last stage: never drawn
            stream += documents[i]
        }
        while ends.count < stages.count { ends.append(stream.count) }
        for (s, end) in ends.enumerated() where end < seqLen + 1 {
            throw DataError(.tooShort, "data.curriculum.stages[\(s)]: holds \(end) tokens; one sequence needs data.seq_len + 1 = \(seqLen + 1) (raise its max_difficulty or lower seq_len)")
        }
        return (stream, CurriculumPlan(opensAt: stages.map(\.opensAt), tokens: ends))
    }
}
